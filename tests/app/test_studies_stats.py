"""Results through the app: the published table from its counts, and agreement with the libraries.

Readers answer through the reader API (their own tokens), the owner reads
``/api/v1/studies/{id}/results`` and the exports; the numbers are checked against the
published percentages and against statsmodels / scikit-learn / SciPy computed here.
"""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from tests.app.studies_support import invite, owner, readings_of, ready_study_without_images

# rows: truth; (real→real, real→synthetic, synthetic→real, synthetic→synthetic, unsure real,
# unsure synthetic). The senior's 19 unsure answers split 8 real / 11 synthetic (20 real cases).
PUBLISHED = {
    "junior": ((5, 15, 21, 8, 0, 1), (26.5, 27.6, 25.0)),
    "senior": ((10, 2, 7, 12, 8, 11), (71.0, 63.2, 83.3)),
}


def _answers_for(counts, truths: list[str]) -> list[str]:
    """Answers for cases in order, given per-truth counts of each answer."""
    rr, rs, sr, ss, ur, us = counts
    pool = {"real": ["real"] * rr + ["synthetic"] * rs + ["unsure"] * ur,
            "synthetic": ["real"] * sr + ["synthetic"] * ss + ["unsure"] * us}  # fmt: skip
    return [pool[truth].pop() for truth in truths]


def _put(reader, token: str, body: dict) -> None:
    answer = reader.put(f"/api/v1/reader/cases/{token}/answer", json=body)
    assert answer.status_code == 201, answer.text


def _by_reader(results: dict) -> dict:
    return {row["reader"]: row for row in results["per_reader"]}


def test_published_table_from_its_counts(server):
    study_owner = owner(server)
    study_id = ready_study_without_images(server, study_owner.username, 20, 30,
                                          confidence_scale=False, allow_unsure=True)  # fmt: skip
    for label, (counts, _) in PUBLISHED.items():
        invitation, reader = invite(server, study_owner, study_id, label)
        readings = readings_of(server, invitation["reader"]["id"])
        for reading, given in zip(
            readings, _answers_for(counts, [r["truth"] for r in readings]), strict=True
        ):
            _put(reader, reading["token"], {"answer": given})
    answer = study_owner.client.get(f"/api/v1/studies/{study_id}/results")
    assert answer.status_code == 200, answer.text
    results = answer.json()
    assert results["positive_class"] == "synthetic"
    for label, (counts, (accuracy, sensitivity, specificity)) in PUBLISHED.items():
        row = _by_reader(results)[label]
        assert (row["tn"], row["fp"], row["fn"], row["tp"]) == counts[:4]
        assert row["unsure"] == counts[4] + counts[5]
        assert round(100 * row["accuracy"]["value"], 1) == accuracy
        assert round(100 * row["sensitivity"]["value"], 1) == sensitivity
        assert round(100 * row["specificity"]["value"], 1) == specificity
        assert row["auc"] is None  # no confidence scale: no ROC
        assert results["unsure_by_truth"][label] == {"negative": counts[4], "positive": counts[5]}
    assert "synthetic" in results["definitions"]["positive_class"]
    page = study_owner.client.get(f"/studies/{study_id}/report")
    assert page.status_code in (303, 401, 403)  # pages need the session cookie, not a token


@pytest.fixture(scope="module")
def random_study(server):
    """Three readers answering 40 cases (5 shown twice) at random, with confidences."""
    rng = np.random.default_rng(11)
    study_owner = owner(server)
    study_id = ready_study_without_images(server, study_owner.username, 18, 22, repeats=5,
                                          confidence_scale=True, allow_unsure=True)  # fmt: skip
    given = []
    for label in ("alice", "bob", "carol"):
        invitation, reader = invite(server, study_owner, study_id, label)
        for reading in readings_of(server, invitation["reader"]["id"]):
            answer = str(rng.choice(["real", "synthetic", "unsure"], p=[0.42, 0.42, 0.16]))
            confidence = None if answer == "unsure" else int(rng.integers(1, 6))
            _put(reader, reading["token"], {"answer": answer, "confidence": confidence,
                                            "time_ms": int(rng.integers(500, 9000))})  # fmt: skip
            given.append({**reading, "reader": label, "answer": answer, "confidence": confidence})
    results = study_owner.client.get(f"/api/v1/studies/{study_id}/results").json()
    return study_owner, study_id, given, results


def _rating(row) -> int:
    if row["answer"] == "unsure":
        return 5
    return 5 + row["confidence"] if row["answer"] == "synthetic" else 5 - row["confidence"]


def test_rates_intervals_and_tests_agree_with_statsmodels_and_scipy(random_study):
    _, _, given, results = random_study
    for label, row in _by_reader(results).items():
        first = [g for g in given if g["reader"] == label and g["reading"] == 0]
        definite = [g for g in first if g["answer"] != "unsure"]
        tp = sum(g["truth"] == g["answer"] == "synthetic" for g in definite)
        fn = sum(g["truth"] == "synthetic" and g["answer"] == "real" for g in definite)
        right = sum(g["truth"] == g["answer"] for g in definite)
        low, high = proportion_confint(tp, tp + fn, alpha=0.05, method="wilson")
        assert row["sensitivity"]["value"] == pytest.approx(tp / (tp + fn), abs=1e-12)
        assert (row["sensitivity"]["low"], row["sensitivity"]["high"]) == pytest.approx(
            (low, high), abs=1e-12
        )
        assert row["binomial_p_value"] == pytest.approx(
            binomtest(right, len(definite), 0.5).pvalue, abs=1e-12
        )
        truth = [int(g["truth"] == "synthetic") for g in first]
        assert row["auc"] == pytest.approx(
            roc_auc_score(truth, [_rating(g) for g in first]), abs=1e-12
        )
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
        assert row["unsure_rate"]["value"] == pytest.approx(
            (len(first) - len(definite)) / len(first)
        )


def test_kappas_agree_with_scikit_learn_and_statsmodels(random_study):
    _, _, given, results = random_study
    first = {(g["reader"], g["case_id"]): g["answer"] for g in given if g["reading"] == 0}
    cases = sorted({case for _, case in first})
    pairs = {(k["reader_a"], k["reader_b"]): k for k in results["agreement"]["cohen_kappa"]}
    for a, b in itertools.combinations(("alice", "bob", "carol"), 2):
        expected = cohen_kappa_score([first[(a, c)] for c in cases], [first[(b, c)] for c in cases])
        assert pairs[(a, b)]["kappa"] == pytest.approx(expected, abs=1e-12)
    codes = np.array([[["real", "synthetic", "unsure"].index(first[(r, c)]) for r in ("alice", "bob", "carol")]
                      for c in cases])  # fmt: skip
    table, _ = aggregate_raters(codes, n_cat=3)
    assert results["agreement"]["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=1e-12)
    intra = {k["reader_a"]: k for k in results["agreement"]["intra_reader_kappa"]}
    for label in ("alice", "bob", "carol"):
        second = {
            g["case_id"]: g["answer"] for g in given if g["reader"] == label and g["reading"] == 1
        }
        assert len(second) == 5
        expected = cohen_kappa_score([first[(label, c)] for c in sorted(second)],
                                     [second[c] for c in sorted(second)])  # fmt: skip
        assert intra[label]["n_cases"] == 5
        if np.isfinite(expected):
            assert intra[label]["kappa"] == pytest.approx(expected, abs=1e-12)


def test_exports_hold_every_answer(random_study):
    study_owner, study_id, given, results = random_study
    base = f"/api/v1/studies/{study_id}/export"
    answers = list(csv.DictReader(io.StringIO(study_owner.client.get(f"{base}/answers.csv").text)))
    assert len(answers) == len(given) == results["n_answers"]
    assert {row["truth"] for row in answers} == {"real", "synthetic"}
    assert all(int(row["time_ms"]) >= 500 for row in answers)
    mrmc = list(csv.DictReader(io.StringIO(study_owner.client.get(f"{base}/mrmc.csv").text)))
    assert len(mrmc) == sum(g["reading"] == 0 for g in given)
    assert set(mrmc[0]) == {"reader", "case", "modality", "truth", "rating"}
    imrmc = list(csv.DictReader(io.StringIO(study_owner.client.get(f"{base}/mrmc-imrmc.csv").text)))
    assert sum(row["readerID"] == "truth" for row in imrmc) == 40
    summary = study_owner.client.get(f"{base}/summary.json").json()
    assert summary["results"]["definitions"]["sensitivity"].startswith("TP / (TP + FN)")
    assert summary["results"]["per_reader"] == results["per_reader"]
    missing = study_owner.client.get(f"{base}/secrets.txt")
    assert missing.status_code == 404 and "answers.csv" in missing.json()["detail"]


def test_plots_are_pngs(random_study):
    study_owner, study_id, _, _ = random_study
    for name in ("confusion", "roc", "clicks"):
        answer = study_owner.client.get(f"/api/v1/studies/{study_id}/plots/{name}.png")
        assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n", name
    assert study_owner.client.get(f"/api/v1/studies/{study_id}/plots/pie.png").status_code == 404


def test_other_owners_cannot_see_the_study(server, random_study):
    _, study_id, _, _ = random_study
    stranger = owner(server)
    answer = stranger.client.get(f"/api/v1/studies/{study_id}/results")
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"study {study_id} not found"
    admin = owner(server, "admin")
    assert admin.client.get(f"/api/v1/studies/{study_id}/results").status_code == 200


def test_two_synthetic_arms_are_compared_by_how_often_they_pass_as_real(server):
    from scipy.stats import fisher_exact

    study_owner = owner(server)
    study_id = ready_study_without_images(server, study_owner.username, 10, 10, confidence_scale=True,
                                          arm_names=("paper", "realistic"),
                                          truths=("synthetic", "synthetic"))  # fmt: skip
    invitation, reader = invite(server, study_owner, study_id, "profile reader")
    table = {"paper": [0, 0], "realistic": [0, 0]}
    for index, reading in enumerate(readings_of(server, invitation["reader"]["id"])):
        called_real = index % 2 == 0 if reading["arm"] == "paper" else index % 5 == 0
        _put(
            reader,
            reading["token"],
            {"answer": "real" if called_real else "synthetic", "confidence": 2},
        )
        table[reading["arm"]][0 if called_real else 1] += 1
    results = study_owner.client.get(f"/api/v1/studies/{study_id}/results").json()
    rates = {row["arm"]: row for row in results["arms"]["rates"]}
    assert rates["paper"]["called_real"]["value"] == pytest.approx(table["paper"][0] / 10)
    odds, p_value = fisher_exact([table["paper"], table["realistic"]])
    assert results["arms"]["comparison"]["p_value"] == pytest.approx(p_value)
    row = results["per_reader"][0]
    assert row["specificity"]["value"] is None  # no real case: not defined, reported as null
    assert row["auc"] is None and results["roc"] == []
