"""Practice cases and the question set, through the reader API and the owner's exports.

Practice cases come first in every reader's order, reveal their truth once answered, and are
never counted: not in progress, results, plots, exports (answers.csv, MRMC), the summary or the
report. Every practice answer here carries a comment that no owner output may contain.
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.app.studies_support import invite, owner, readings_of, ready_study_without_images

N_REAL, N_SYNTHETIC, N_PRACTICE = 3, 3, 2
PRACTICE_MARK = "PRACTICE-ONLY-COMMENT"
FEATURES = ["texture", "margin", "shape", "enhancement", "location", "other"]


@pytest.fixture(scope="module")
def setting(server):
    study_owner = owner(server)
    study_id = ready_study_without_images(
        server, study_owner.username, N_REAL, N_SYNTHETIC, practice=N_PRACTICE, with_images=True,
        questions={"comment": True, "features": True}, repeats=1,
    )  # fmt: skip
    invitation, reader = invite(server, study_owner, study_id, "practising reader")
    readings = readings_of(server, invitation["reader"]["id"])
    return {"owner": study_owner, "study_id": study_id, "reader": reader, "readings": readings}


def _put(reader, token: str, body: dict):
    return reader.put(f"/api/v1/reader/cases/{token}/answer", json=body)


def test_practice_comes_first_and_counts_apart(setting):
    reader, readings = setting["reader"], setting["readings"]
    assert [r["practice"] for r in readings] == [True] * N_PRACTICE + [False] * (
        N_REAL + N_SYNTHETIC + 1
    )
    overview = reader.get("/api/v1/reader").json()
    assert overview["study"]["questions"] == {"comment": True, "features": FEATURES}
    assert overview["progress"] == {"answered": 0, "total": N_REAL + N_SYNTHETIC + 1,
                                    "next": readings[0]["token"]}  # fmt: skip
    assert [item["practice"] for item in overview["readings"]] == [r["practice"] for r in readings]
    first = reader.get(f"/api/v1/reader/cases/{readings[0]['token']}").json()
    assert (first["practice"], first["position"], first["total"]) == (True, 1, N_PRACTICE)
    assert first["truth"] is None and first["previous"] is None
    assert first["next"] == readings[1]["token"]
    test = reader.get(f"/api/v1/reader/cases/{readings[N_PRACTICE]['token']}").json()
    assert (test["practice"], test["position"], test["total"]) == (
        False,
        1,
        N_REAL + N_SYNTHETIC + 1,
    )
    assert "truth" not in test and test["previous"] == readings[N_PRACTICE - 1]["token"]


def test_a_practice_answer_reveals_the_truth_and_is_kept(setting):
    reader, readings = setting["reader"], setting["readings"]
    for reading in readings[:N_PRACTICE]:
        body = {"answer": "synthetic", "confidence": 2, "comment": PRACTICE_MARK,
                "features": ["shape", "texture"]}  # fmt: skip
        answer = _put(reader, reading["token"], body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["truth"] == reading["truth"]
        assert answer.json()["answer"]["features"] == ["texture", "shape"]  # one order
        assert answer.json()["progress"]["answered"] == 0  # practice is not progress
        again = reader.get(f"/api/v1/reader/cases/{reading['token']}").json()
        assert again["truth"] == reading["truth"] and again["answer"]["comment"] == PRACTICE_MARK
    overview = reader.get("/api/v1/reader").json()
    assert overview["progress"]["next"] == readings[N_PRACTICE]["token"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"answer": "real", "confidence": 3, "features": ["texture", "colour"]}, "'colour' is not"),
        ({"answer": "real", "confidence": 3, "comment": "x" * 2001}, "at most 2000 characters"),
        ({"answer": "real", "confidence": 3, "features": "texture"}, "features"),
    ],
)
def test_bad_question_answers_are_refused(setting, body, says):
    token = setting["readings"][N_PRACTICE]["token"]
    answer = _put(setting["reader"], token, body)
    assert answer.status_code == 422 and says in answer.json()["detail"], answer.text


def _answer_tests(setting) -> list[dict]:
    """Answer every test reading: features by truth, a comment on the synthetic ones."""
    given = []
    for reading in setting["readings"][N_PRACTICE:]:
        synthetic = reading["truth"] == "synthetic"
        body = {"answer": "synthetic" if synthetic else "real", "confidence": 4,
                "features": ["margin"] if synthetic else ["texture", "location"],
                "comment": f"case {reading['case_id']} looked odd" if synthetic else None}  # fmt: skip
        answer = _put(setting["reader"], reading["token"], body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["truth"] is None  # a test case never reveals its truth
        given.append({**reading, **body})
    return given


def test_practice_never_enters_a_statistic_or_an_export(setting):
    given = _answer_tests(setting)
    client, study_id = setting["owner"].client, setting["study_id"]
    practice_cases = {f"case-{r['case_id']}" for r in setting["readings"] if r["practice"]}
    results = client.get(f"/api/v1/studies/{study_id}/results").json()
    assert results["n_answers"] == len(given)
    assert results["readers"][0]["answers"] == results["readers"][0]["readings"] == len(given)
    pooled = results["pooled"]
    assert pooled["n_cases"] == N_REAL + N_SYNTHETIC  # practice cases are no cases here
    assert (pooled["tp"], pooled["tn"], pooled["fp"], pooled["fn"]) == (N_SYNTHETIC, N_REAL, 0, 0)
    rows = list(csv.DictReader(io.StringIO(client.get(
        f"/api/v1/studies/{study_id}/export/answers.csv").text)))  # fmt: skip
    assert len(rows) == len(given) and not {row["case"] for row in rows} & practice_cases
    for name in ("mrmc.csv", "mrmc-imrmc.csv", "summary.json"):
        text = client.get(f"/api/v1/studies/{study_id}/export/{name}").text
        assert not any(case in text for case in practice_cases), name
        assert PRACTICE_MARK not in text, name
    long_rows = list(csv.DictReader(io.StringIO(client.get(
        f"/api/v1/studies/{study_id}/export/mrmc.csv").text)))  # fmt: skip
    assert len(long_rows) == N_REAL + N_SYNTHETIC  # first readings, practice out
    reader_list = client.get(f"/api/v1/studies/{study_id}/readers").json()["items"]
    assert (reader_list[0]["answered"], reader_list[0]["total"]) == (len(given), len(given))


def test_the_question_set_is_summarized_per_arm_and_answer(setting):
    client, study_id = setting["owner"].client, setting["study_id"]
    questions = client.get(f"/api/v1/studies/{study_id}/results").json()["questions"]
    by_arm = {row["arm"]: row for row in questions["features_by_arm"]}
    tests = [r for r in setting["readings"] if not r["practice"]]
    n_real = sum(r["truth"] == "real" for r in tests)
    assert by_arm["Real"]["counts"]["texture"] == by_arm["Real"]["counts"]["location"] == n_real
    assert by_arm["Real"]["counts"]["margin"] == 0
    assert by_arm["Synthetic"]["counts"]["margin"] == len(tests) - n_real
    by_answer = {row["answer"]: row for row in questions["features_by_answer"]}
    assert by_answer["synthetic"]["counts"]["margin"] == len(tests) - n_real
    assert len(questions["comments"]) == len(tests) - n_real
    assert all(c["arm"] == "Synthetic" and "looked odd" in c["comment"]
               for c in questions["comments"])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(client.get(
        f"/api/v1/studies/{study_id}/export/answers.csv").text)))  # fmt: skip
    assert {row["features"] for row in rows} == {"margin", "texture location"}


def test_the_pages_show_the_summary_and_never_the_practice(server, setting):
    username = setting["owner"].username
    from app.accounts import auth

    password = auth.generate_password()
    with server.session() as session:
        from sqlalchemy import select

        from app.db.tables import User

        user = session.scalar(select(User).where(User.username == username))
        user.password_hash = auth.hash_password(password)
        session.commit()
    browser = server.login(username, password)
    for page in ("results", "report"):
        html = browser.get(f"/studies/{setting['study_id']}/{page}").text
        assert "What gave cases away" in html and "looked odd" in html, page
        assert PRACTICE_MARK not in html, page
    browser.close()


def test_a_study_without_questions_refuses_their_answers(server, setting):
    study_owner = setting["owner"]
    study_id = ready_study_without_images(server, study_owner.username, 1, 1)
    invitation, reader = invite(server, study_owner, study_id, "plain reader")
    overview = reader.get("/api/v1/reader").json()
    assert overview["study"]["questions"] == {"comment": False, "features": []}
    first, second = (r["token"] for r in readings_of(server, invitation["reader"]["id"]))
    refused = _put(reader, first, {"answer": "real", "confidence": 2, "features": ["shape"]})
    assert refused.status_code == 422 and "does not ask which features" in refused.json()["detail"]
    refused = _put(reader, first, {"answer": "real", "confidence": 2, "comment": "odd"})
    assert refused.status_code == 422 and "asks for no comment" in refused.json()["detail"]
    empty = _put(
        reader, second, {"answer": "real", "confidence": 2, "features": [], "comment": " "}
    )
    assert empty.status_code == 201, empty.text
    assert (empty.json()["answer"]["features"], empty.json()["answer"]["comment"]) == (None, None)
