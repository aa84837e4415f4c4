"""Tests of the reader-study statistics against the published table and the libraries."""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from syntumor_core.errors import ParameterError
from syntumor_core.reader_study import (
    CATEGORIES,
    DEFINITIONS,
    POOLED_READER,
    Answer,
    ReaderStats,
    _weighted_aucs,  # the vectorised bootstrap statistic
    bootstrap_auc_ci,
    cohen_kappa_pairs,
    confusion_counts,
    definitions,
    fleiss_kappa_all,
    intra_reader_kappa,
    mrmc_rows,
    pooled_stats,
    rating,
    reader_averaged_auc,
    reader_stats,
    roc_from_confidence,
    wilson_proportion,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def answers_from_counts(reader, counts, unsure_truths):
    """Answers from (real->real, real->syn, syn->real, syn->syn) counts and unsure truths."""
    cells = [("real", "real"), ("real", "synthetic"), ("synthetic", "real")]
    cells.append(("synthetic", "synthetic"))
    pairs = [cell for cell, count in zip(cells, counts, strict=True) for _ in range(count)]
    pairs += [(truth, "unsure") for truth in unsure_truths]
    return [Answer(reader, f"case{i:03d}", t, a) for i, (t, a) in enumerate(pairs)]


def random_study(rng, n_readers=3, n_cases=40, p_correct=0.7, p_unsure=0.1, confidence=True):
    """Every reader reads every case once; answers right with ``p_correct``."""
    truths = rng.choice(["real", "synthetic"], size=n_cases)
    answers = []
    for r in range(n_readers):
        for c, truth in enumerate(truths):
            other = "real" if truth == "synthetic" else "synthetic"
            draw = rng.random()
            answer = "unsure" if draw < p_unsure else (truth if draw < p_correct else other)
            conf = int(rng.integers(1, 6)) if confidence else None
            answers.append(Answer(f"r{r}", f"c{c}", str(truth), answer, conf))
    return answers


# Published counts (spec/reader-study.md). With 20 real and 30 synthetic cases, the junior's
# one unsure is a synthetic case and the senior's 19 are 8 real + 11 synthetic.
JUNIOR = answers_from_counts("junior", (5, 15, 21, 8), ["synthetic"])
SENIOR = answers_from_counts("senior", (10, 2, 7, 12), ["real"] * 8 + ["synthetic"] * 11)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [(JUNIOR, (26.5, 27.6, 25.0)), (SENIOR, (71.0, 63.2, 83.3))],
)
def test_published_table_is_reproduced(answers, expected):
    stats = reader_stats(answers)
    got = tuple(round(100 * p.value, 1) for p in (stats.accuracy, stats.sensitivity,
                                                   stats.specificity))  # fmt: skip
    assert got == expected
    assert stats.positive_class == "synthetic"
    assert stats.n_cases == 50 == stats.n_answers


def test_published_arms_are_20_real_and_30_synthetic():
    for answers in (JUNIOR, SENIOR):
        truths = [a.truth for a in answers]
        assert (truths.count("real"), truths.count("synthetic")) == (20, 30)


def test_unsure_placement_does_not_change_rates_that_exclude_unsure():
    moved = answers_from_counts("senior", (10, 2, 7, 12), ["synthetic"] * 19)
    a, b = reader_stats(SENIOR), reader_stats(moved)
    for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "unsure_rate"):
        assert getattr(a, name) == getattr(b, name)
    assert a.accuracy_unsure_as_wrong == b.accuracy_unsure_as_wrong
    assert a.accuracy_unsure_as_wrong.value == pytest.approx(22 / 50)


def test_confusion_counts_name_the_positive_class():
    counts = confusion_counts(JUNIOR)
    assert (counts["tp"], counts["fp"], counts["tn"], counts["fn"]) == (8, 15, 5, 21)
    assert counts["unsure_positive_truth"] == 1 and counts["unsure_negative_truth"] == 0
    flipped = confusion_counts(JUNIOR, positive="real")
    assert (flipped["tp"], flipped["fp"], flipped["tn"], flipped["fn"]) == (5, 21, 8, 15)
    as_real = reader_stats(JUNIOR, positive="real")
    assert as_real.sensitivity == reader_stats(JUNIOR).specificity
    assert as_real.accuracy == reader_stats(JUNIOR).accuracy


def test_wilson_and_binomial_agree_with_libraries(rng):
    answers = random_study(rng, n_readers=1, n_cases=60)
    stats = reader_stats(answers, n_bootstrap=50)
    definite = stats.tp + stats.fp + stats.tn + stats.fn
    correct = stats.tp + stats.tn
    low, high = proportion_confint(correct, definite, alpha=0.05, method="wilson")
    assert (stats.accuracy.low, stats.accuracy.high) == pytest.approx((low, high), abs=1e-12)
    assert stats.binomial_p_value == pytest.approx(binomtest(correct, definite, 0.5).pvalue)
    for numerator, denominator in rng.integers(0, 40, size=(20, 2)):
        denominator = int(numerator + denominator)
        if denominator == 0:
            continue
        got = wilson_proportion(int(numerator), denominator)
        low, high = proportion_confint(numerator, denominator, method="wilson")
        assert got.low <= got.value <= got.high
        assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)


def test_cohen_kappa_pairs_match_sklearn_on_shared_cases(rng):
    answers = random_study(rng, n_readers=3, n_cases=50)
    answers = [a for a in answers if not (a.reader == "r2" and a.case in {"c0", "c1", "c2"})]
    pairs = cohen_kappa_pairs(answers)
    assert [(p.reader_a, p.reader_b) for p in pairs] == [("r0", "r1"), ("r0", "r2"), ("r1", "r2")]
    for pair in pairs:
        by_case = {
            reader: {a.case: a.answer for a in answers if a.reader == reader}
            for reader in (pair.reader_a, pair.reader_b)
        }
        shared = sorted(set(by_case[pair.reader_a]) & set(by_case[pair.reader_b]))
        labels_a = [by_case[pair.reader_a][c] for c in shared]
        labels_b = [by_case[pair.reader_b][c] for c in shared]
        assert pair.n_cases == len(shared) == (47 if "r2" in (pair.reader_a, pair.reader_b) else 50)
        assert pair.kappa == pytest.approx(cohen_kappa_score(labels_a, labels_b))
        assert pair.low < pair.kappa < pair.high
        agreement = np.mean([x == y for x, y in zip(labels_a, labels_b, strict=True)])
        assert pair.observed_agreement == pytest.approx(agreement)


def test_fleiss_kappa_matches_statsmodels_directly(rng):
    answers = random_study(rng, n_readers=4, n_cases=30)
    table = np.zeros((30, len(CATEGORIES)), dtype=int)
    for a in answers:
        table[int(a.case[1:]), CATEGORIES.index(a.answer)] += 1
    assert fleiss_kappa_all(answers) == pytest.approx(fleiss_kappa(table, method="fleiss"))


def test_intra_reader_kappa_matches_sklearn(rng):
    first = random_study(rng, n_readers=2, n_cases=30)
    second = [
        dataclasses.replace(a, repeat=1, answer=str(rng.choice(CATEGORIES)))
        if rng.random() < 0.3 else dataclasses.replace(a, repeat=1)
        for a in first if a.reader == "r0" and int(a.case[1:]) < 20
    ]  # fmt: skip
    result = intra_reader_kappa(first + second)
    assert list(result) == ["r0"]
    by_case = {a.case: a.answer for a in first if a.reader == "r0"}
    expected = cohen_kappa_score([by_case[a.case] for a in second], [a.answer for a in second])
    assert result["r0"].kappa == pytest.approx(expected)
    assert result["r0"].n_cases == 20
    # repeats do not leak into the per-reader statistics
    assert reader_stats(first + second, reader="r0", n_bootstrap=20) == reader_stats(
        first, reader="r0", n_bootstrap=20
    )


def test_auc_matches_roc_auc_score_and_rating_is_ordered(rng):
    answers = random_study(rng, n_readers=2, n_cases=40)
    mine = [a for a in answers if a.reader == "r1"]
    truth = [int(a.truth == "synthetic") for a in mine]
    scores = [rating(a) for a in mine]
    roc = roc_from_confidence(answers, "r1")
    assert roc.auc == pytest.approx(roc_auc_score(truth, scores))
    assert (roc.fpr[0], roc.tpr[0], roc.fpr[-1], roc.tpr[-1]) == (0, 0, 1, 1)
    assert reader_stats(answers, reader="r1", n_bootstrap=50).auc == pytest.approx(roc.auc)
    pooled_truth = [int(a.truth == "synthetic") for a in answers]
    pooled = roc_from_confidence(answers)
    assert pooled.auc == pytest.approx(roc_auc_score(pooled_truth, [rating(a) for a in answers]))
    ordered = [
        Answer("r", "c", "real", "real", 5), Answer("r", "c", "real", "real", 1),
        Answer("r", "c", "real", "unsure"), Answer("r", "c", "real", "synthetic", 1),
        Answer("r", "c", "real", "synthetic", 5),
    ]  # fmt: skip
    assert np.all(np.diff([rating(a) for a in ordered]) > 0)
    assert [rating(a, positive="real") for a in ordered] == [10 - rating(a) for a in ordered]


def test_bootstrap_ci_contains_auc_and_is_reproducible(rng):
    answers = random_study(rng, n_readers=1, n_cases=40)
    stats = reader_stats(answers, rng=7, n_bootstrap=2000)
    assert stats.auc_low <= stats.auc <= stats.auc_high
    assert stats.auc_high - stats.auc_low > 0
    again = reader_stats(answers, rng=np.random.default_rng(7), n_bootstrap=2000)
    assert (again.auc_low, again.auc_high) == (stats.auc_low, stats.auc_high)
    other = reader_stats(answers, rng=8, n_bootstrap=2000)
    assert (other.auc_low, other.auc_high) != (stats.auc_low, stats.auc_high)
    truth = [int(a.truth == "synthetic") for a in answers]
    scores = [rating(a) for a in answers]
    cases = [a.case for a in answers]
    ci = bootstrap_auc_ci(truth, scores, rng=7, n=2000, cases=cases)
    assert ci == (stats.auc_low, stats.auc_high)


def test_replicate_auc_equals_weighted_roc_auc_score(rng):
    truth = rng.integers(0, 2, size=30)
    scores = rng.integers(0, 11, size=30).astype(float)
    weights = rng.integers(0, 4, size=(5, 30)).astype(float)
    weights[0] = 1.0
    got = _weighted_aucs(truth, scores, weights)
    expected = [roc_auc_score(truth, scores, sample_weight=w) for w in weights]
    assert got == pytest.approx(expected)


def test_reader_averaged_auc_is_mean_of_reader_aucs(rng):
    answers = random_study(rng, n_readers=3, n_cases=30)
    per_reader = [roc_from_confidence(answers, f"r{r}").auc for r in range(3)]
    auc, low, high = reader_averaged_auc(answers, rng=3, n_bootstrap=2000)
    assert auc == pytest.approx(np.mean(per_reader))
    assert low <= auc <= high
    pooled = pooled_stats(answers, rng=3, n_bootstrap=2000)
    assert pooled.reader == POOLED_READER
    assert pooled.auc_low <= pooled.auc <= pooled.auc_high


def test_pooled_counts_are_sums_of_readers(rng):
    answers = random_study(rng, n_readers=3, n_cases=20, confidence=False)
    pooled = pooled_stats(answers)
    readers = [reader_stats(answers, reader=f"r{r}") for r in range(3)]
    for name in ("tp", "fp", "tn", "fn", "unsure", "n_answers"):
        assert getattr(pooled, name) == sum(getattr(s, name) for s in readers)
    assert pooled.n_cases == 20
    assert pooled.auc is None


def test_no_unsure():
    answers = answers_from_counts("r", (3, 1, 2, 4), [])
    stats = reader_stats(answers)
    assert stats.unsure == 0 and stats.unsure_rate.value == 0.0
    assert stats.accuracy == stats.accuracy_unsure_as_wrong
    assert stats.auc is None  # no confidences given


def test_all_unsure_gives_nan_not_crash():
    answers = answers_from_counts("r", (0, 0, 0, 0), ["real", "synthetic", "synthetic"])
    stats = reader_stats(answers)
    for name in ("sensitivity", "specificity", "accuracy", "ppv", "npv"):
        proportion = getattr(stats, name)
        assert math.isnan(proportion.value) and math.isnan(proportion.low)
        assert proportion.denominator == 0
    assert math.isnan(stats.binomial_p_value)
    assert stats.unsure_rate.value == 1.0 and stats.accuracy_unsure_as_wrong.value == 0.0
    assert "not defined" in DEFINITIONS["nan"]


def test_one_truth_only_gives_nan_auc():
    answers = [Answer("r", f"c{i}", "synthetic", "synthetic", i % 5 + 1) for i in range(6)]
    stats = reader_stats(answers)
    assert math.isnan(stats.specificity.value) and stats.sensitivity.value == 1.0
    assert math.isnan(stats.auc) and math.isnan(stats.auc_low)
    with pytest.raises(ParameterError, match="both truths"):
        roc_from_confidence(answers)


def test_one_reader_has_no_pairs_and_no_fleiss():
    assert cohen_kappa_pairs(JUNIOR) == []
    assert fleiss_kappa_all(JUNIOR) is None
    assert intra_reader_kappa(JUNIOR) == {}


def test_identical_constant_answers_give_nan_kappa():
    answers = [Answer(r, f"c{i}", "real", "synthetic") for r in ("a", "b") for i in range(5)]
    (pair,) = cohen_kappa_pairs(answers)
    assert math.isnan(pair.kappa) and pair.observed_agreement == 1.0
    assert math.isnan(fleiss_kappa_all(answers))


def test_cohen_kappa_interval_matches_statsmodels():
    labels = [("real", "real")] * 6 + [("synthetic", "synthetic")] * 5 + [("real", "unsure")] * 2
    answers = [Answer(r, f"c{i}", "real", pair[k]) for i, pair in enumerate(labels)
               for k, r in enumerate(("a", "b"))]  # fmt: skip
    (pair,) = cohen_kappa_pairs(answers)
    expected = cohens_kappa(np.array([[6, 0, 2], [0, 5, 0], [0, 0, 0]]))
    assert (pair.low, pair.high) == pytest.approx((expected.kappa_low, expected.kappa_upp))


def test_mrmc_rows_long_and_imrmc(rng):
    answers = random_study(rng, n_readers=2, n_cases=10)
    rows = mrmc_rows(answers, modality="v1")
    assert len(rows) == 20
    assert set(rows[0]) == {"reader", "case", "modality", "truth", "rating"}
    for row, answer in zip(rows, answers, strict=True):
        assert row["truth"] == int(answer.truth == "synthetic")
        assert row["rating"] == rating(answer) and row["modality"] == "v1"
    imrmc = mrmc_rows(answers, style="imrmc")
    truth_rows = [row for row in imrmc if row["readerID"] == "truth"]
    assert len(truth_rows) == 10 and all(row["modalityID"] == "truth" for row in truth_rows)
    assert len(imrmc) == 30
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["readerID", "caseID", "modalityID", "score"])
    writer.writerows(imrmc)
    assert buffer.getvalue().count("\n") == 30
    with pytest.raises(ParameterError, match="no confidence"):
        mrmc_rows([Answer("r", "c", "real", "real")])


def test_definitions_cover_every_statistic_and_name_positive_class():
    statistic_fields = {f.name for f in dataclasses.fields(ReaderStats)}
    statistic_fields -= {"reader", "n_cases", "n_answers", "auc_low", "auc_high"}
    assert statistic_fields <= set(DEFINITIONS)
    assert "synthetic case" in DEFINITIONS["sensitivity"]
    assert "real case" in definitions("real")["sensitivity"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"truth": "fake"}, "`truth` must be one of"),
        ({"answer": "maybe"}, "`answer` must be one of"),
        ({"confidence": 6}, r"`confidence` must be None or an integer in \[1, 5\], got 6"),
        ({"confidence": True}, "`confidence`"),
        ({"repeat": -1}, "`repeat` must be an integer >= 0, got -1"),
        ({"reader": ""}, "`reader` must be a non-empty string"),
    ],
)
def test_bad_answer_raises(kwargs, message):
    fields = {"reader": "r", "case": "c", "truth": "real", "answer": "real"} | kwargs
    with pytest.raises(ParameterError, match=message):
        Answer(**fields)


def test_inconsistent_answers_raise():
    with pytest.raises(ParameterError, match="twice"):
        reader_stats([Answer("r", "c", "real", "real"), Answer("r", "c", "real", "synthetic")])
    with pytest.raises(ParameterError, match="a case has one truth"):
        pooled_stats([Answer("a", "c", "real", "real"), Answer("b", "c", "synthetic", "real")])
    with pytest.raises(ParameterError, match="pass `reader`"):
        reader_stats(JUNIOR + [dataclasses.replace(a, reader="other") for a in JUNIOR])
    with pytest.raises(ParameterError, match="`positive` must be one of"):
        reader_stats(JUNIOR, positive="fake")
    with pytest.raises(ParameterError, match="level"):
        bootstrap_auc_ci([0, 1], [0.1, 0.9], rng=0, level=1.5)
