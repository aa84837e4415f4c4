"""Practice cases and the question set, as a reader meets them in Chromium.

Two practice cases come first, each showing its truth after the answer; then the test cases,
with an optional comment and "what gave it away" ticks. The owner's export holds the test
answers only, with their comments and features.
"""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import expect

from tests.app.studies_support import (
    SHAPE_A,
    SPACING_A,
    invite,
    owner,
    phantom_case,
    readings_of,
    store_case,
    wait_ready,
)
from tests.browser.conftest import screenshot
from tests.browser.test_reader_study import watch

T = 60_000


@pytest.fixture(scope="module")
def practice_study(web_server):
    study_owner = owner(web_server)

    def stored(seed: int, tumor_seed: int, name: str) -> int:
        image, labels = phantom_case(seed, SHAPE_A, SPACING_A, tumor_seed=tumor_seed)
        return store_case(web_server, image, labels, name)[0]

    real = [stored(70 + i, i, f"real {i}") for i in range(2)]
    synthetic = [stored(80 + i, 20 + i, f"synthetic {i}") for i in range(2)]
    spec = {
        "title": "Practice study",
        "arms": [
            {"name": "Real", "truth": "real", "volumes": [{"image_id": i} for i in real]},
            {"name": "Synthetic", "truth": "synthetic",
             "volumes": [{"image_id": i} for i in synthetic]},
        ],
        "practice": [{"image_id": stored(90, 30, "practice real"), "truth": "real"},
                     {"image_id": stored(91, 31, "practice synthetic"), "truth": "synthetic"}],
        "questions": {"comment": True, "features": True},
    }  # fmt: skip
    checks = study_owner.client.post("/api/v1/studies/checks", json=spec).json()
    spec["acknowledge"] = [c["code"] for c in checks["checks"] if c["level"] == "warning"]
    created = study_owner.client.post("/api/v1/studies", json=spec)
    assert created.status_code == 201, created.text
    prepared = wait_ready(study_owner, created.json()["id"])
    assert prepared["status"] == "ready", prepared["status_message"]
    return study_owner, prepared


@pytest.mark.slow
def test_practice_cases_show_the_truth_and_stay_out_of_the_export(page, web_server, practice_study):
    study_owner, prepared = practice_study
    invitation, _ = invite(web_server, study_owner, prepared["id"], "Reader practice")
    readings = readings_of(web_server, invitation["reader"]["id"])
    assert len(readings) == 6  # two practice readings, then four test readings
    problems = watch(page)
    page.goto(invitation["invitation_url"])
    page.fill("input[name=experience_years]", "2")
    page.fill("input[name=specialty]", "radiology resident")
    page.locator("form button[type=submit]").click()
    page.locator("#start").click()

    for index in range(2):  # practice: the truth after each answer, then on by Enter or click
        expect(page.locator("#position")).to_have_text(f"Practice {index + 1} of 2", timeout=T)
        expect(page.locator("#practice-banner")).to_be_visible()
        expect(page.locator("#viewer-status")).to_be_hidden(timeout=T)
        page.locator('button[data-answer="real"]').click()
        page.locator('button[data-confidence="3"]').click()
        page.locator("#submit").click()
        truth = readings[index]["truth"]
        feedback = page.locator("#feedback")
        expect(feedback).to_contain_text(f"this case is {truth}", timeout=T)
        expect(feedback).to_contain_text(": correct." if truth == "real" else ": not correct.")
        expect(page.locator('button[data-answer="real"]')).to_be_disabled()
        if index == 0:
            screenshot(page, "reader-practice-feedback")
            page.keyboard.press("Enter")
        else:
            page.locator("#submit").click()

    answers = []
    for index in range(4):  # the test: no truth shown; a comment and features on some cases
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 4", timeout=T)
        expect(page.locator("#practice-banner")).to_be_hidden()
        expect(page.locator("#viewer-status")).to_be_hidden(timeout=T)
        answer = "synthetic" if index % 2 else "real"
        answers.append(answer)
        page.locator(f'button[data-answer="{answer}"]').click()
        page.locator('button[data-confidence="4"]').click()
        if index == 1:
            page.locator('#features input[value="margin"]').check()
            page.locator('#features input[value="texture"]').check()
            page.locator("#comment").click()
            page.keyboard.type("rim too sharp")  # "r" and "s" here are text, not shortcuts
            expect(page.locator('button[data-answer="synthetic"]')).to_have_attribute(
                "aria-pressed", "true"
            )
        page.locator("#submit").click()
        expect(page.locator("#feedback")).to_be_hidden()
    expect(page).to_have_url(f"{web_server.url}/read/done", timeout=T)
    assert not problems, problems

    text = study_owner.client.get(f"/api/v1/studies/{prepared['id']}/export/answers.csv").text
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["reader"] == "Reader practice"]
    rows.sort(key=lambda row: int(row["position"]))
    assert len(rows) == 4, "practice answers must stay out of the export"
    assert [row["answer"] for row in rows] == answers
    assert rows[1]["comment"] == "rim too sharp"
    assert sorted(rows[1]["features"].split()) == ["margin", "texture"]
    assert [bool(row["comment"]) for row in rows] == [False, True, False, False]
