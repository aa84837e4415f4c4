"""A reader takes a 6-case study with the keyboard only, leaves and resumes; the owner reads the results."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.app.studies_support import (
    SHAPE_A,
    SHAPE_B,
    SPACING_A,
    SPACING_B,
    invite,
    owner,
    phantom_case,
    readings_of,
    store_case,
    wait_ready,
)
from tests.browser.conftest import log_in, screenshot

T = 60_000  # ms: generous, the test machines are shared and slow


@pytest.fixture(scope="module")
def study(web_server):
    study_owner = owner(web_server)
    real = [store_case(web_server, *phantom_case(40 + i, SHAPE_A, SPACING_A, tumor_seed=i, tumor_type="medium"),
                       f"real {i}") for i in range(3)]  # fmt: skip
    example = store_case(web_server, *phantom_case(49, SHAPE_A, SPACING_A, tumor_seed=5), "example")
    healthy = [store_case(web_server, *phantom_case(50 + i, SHAPE_B, SPACING_B), f"healthy {i}")
               for i in range(3)]  # fmt: skip
    spec = {
        "title": "Browser study",
        "description": "Phantom cases: three with tumors made beforehand, three synthesized by the worker.",
        "instructions": "Judge the tumor at the crosshair.",
        "click_synthetic": True,
        "arms": [
            {"name": "Real tumors", "truth": "real", "volumes": [{"image_id": i} for i, _ in real]},
            {"name": "Synthetic tumors", "truth": "synthetic", "source": "synthesize",
             "healthy": [{"image_id": i} for i, _ in healthy]},
        ],
        "examples": [{"image_id": example[0], "caption": "Real tumor (example)"}],
    }  # fmt: skip
    created = study_owner.client.post("/api/v1/studies", json=spec)
    assert created.status_code == 201, created.text
    prepared = wait_ready(study_owner, created.json()["id"])
    assert prepared["status"] == "ready", prepared["status_message"]
    return study_owner, prepared


def _rendered(page) -> float:
    """Share of the viewer canvas that is not the dark background (NiiVue drew the CT)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"))
    return float((np.abs(pixels.astype(int) - [13, 18, 23]).max(axis=-1) > 20).mean())


def _answer_case(page, key: str, confidence: str, mark: bool) -> None:
    expect(page.locator("#viewer-status")).to_be_hidden(timeout=T)
    page.keyboard.press(key)
    page.keyboard.press(confidence)
    if mark:
        page.keyboard.press("x")
        expect(page.locator("#mark-status")).to_contain_text("marked at voxel", timeout=T)
    page.keyboard.press("Enter")


def test_reader_completes_the_study_by_keyboard_and_resumes(page, web_server, study):
    study_owner, prepared = study
    invitation, _ = invite(web_server, study_owner, prepared["id"], "Reader K")
    readings = readings_of(web_server, invitation["reader"]["id"])
    assert len(readings) == 6
    plan = [("s" if r["truth"] == "synthetic" else "r") if i < 4 else ("r" if r["truth"] == "synthetic" else "s")
            for i, r in enumerate(readings)]  # fmt: skip
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(invitation["invitation_url"])
    expect(page).to_have_url(f"{web_server.url}/read", timeout=T)
    expect(page.locator("h1")).to_have_text("Browser study", timeout=T)
    expect(page.locator("input[name=experience_years]")).to_be_focused(timeout=T)  # autofocus
    page.keyboard.type("7")
    page.keyboard.press("Tab")
    page.keyboard.type("abdominal radiology")
    page.keyboard.press("Enter")
    expect(page.locator("#start")).to_be_focused(timeout=T)
    expect(page.locator("figcaption")).to_have_text("Real tumor (example)", timeout=T)
    page.wait_for_timeout(1500)  # let the example render for the screenshot
    screenshot(page, "reader-start")
    page.keyboard.press("Enter")

    expect(page.locator("#position")).to_have_text("Case 1 of 6", timeout=T)
    expect(page.locator("#viewer-status")).to_be_hidden(timeout=T)
    page.wait_for_timeout(800)
    assert _rendered(page) > 0.05, "the viewer shows nothing"
    page.keyboard.press("w")  # abdomen window
    expect(page.locator('[data-window="abdomen"]')).to_have_attribute(
        "aria-pressed", "true", timeout=T
    )
    page.keyboard.press("r")
    page.keyboard.press("4")
    screenshot(page, "reader-case")
    page.keyboard.press("Enter")
    for index in (1, 2):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _answer_case(page, plan[index], "3", mark=index == 2)
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)

    page.reload()  # leave mid-way: the same case comes back, the answers stay
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)
    expect(page.locator("#answered")).to_have_text("3 answered", timeout=T)
    page.goto(f"{web_server.url}/read")
    expect(page.locator("#start")).to_contain_text("Resume at case 4 of 6", timeout=T)
    expect(page.locator("#start")).to_be_focused(timeout=T)
    page.keyboard.press("Enter")
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)
    page.keyboard.press("p")  # back to an answered case: it is final
    expect(page.locator("#position")).to_have_text("Case 3 of 6", timeout=T)
    expect(page.locator("#message")).to_have_text("Answered (final).", timeout=T)
    page.keyboard.press("n")
    for index in (3, 4, 5):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _answer_case(page, plan[index], "5" if index == 5 else "2", mark=False)
    expect(page).to_have_url(f"{web_server.url}/read/done", timeout=T)
    expect(page.locator("main")).to_contain_text("You answered 6 of 6 cases", timeout=T)
    assert not errors, errors

    rows = list(csv.DictReader(io.StringIO(
        study_owner.client.get(f"/api/v1/studies/{prepared['id']}/export/answers.csv").text
    )))  # fmt: skip
    rows.sort(key=lambda row: int(row["position"]))
    assert [row["answer"][0] for row in rows] == ["r", *plan[1:]]  # the first case got "r"
    assert [row["confidence"] for row in rows] == ["4", "3", "3", "2", "2", "5"]
    assert all(int(row["time_ms"]) > 0 for row in rows)
    assert sum(bool(row["click_i"]) for row in rows) == 1
    assert {row["specialty"] for row in rows} == {"abdominal radiology"}


def test_owner_sees_results_with_plots(page, web_server, study):
    study_owner, prepared = study
    invitation, reader = invite(web_server, study_owner, prepared["id"], "Reader API")
    for index, reading in enumerate(readings_of(web_server, invitation["reader"]["id"])):
        body = {"answer": reading["truth"] if index % 3 else "unsure",
                "confidence": None if index % 3 == 0 else 1 + index % 5,
                "click": [20 + index, 22, 12] if reading["truth"] == "synthetic" else None}  # fmt: skip
        assert (
            reader.put(f"/api/v1/reader/cases/{reading['token']}/answer", json=body).status_code
            == 201
        )
    username = study_owner.username
    with web_server.session() as session:
        from sqlalchemy import select

        from app import auth
        from app.models import User

        user = session.scalar(select(User).where(User.username == username))
        password = auth.generate_password()
        user.password_hash = auth.hash_password(password)
        session.commit()
    log_in(page, web_server, username, password)
    page.goto(f"{web_server.url}/studies/{prepared['id']}")
    expect(page.locator("#study-status")).to_have_text("ready", timeout=T)
    screenshot(page, "study-detail")
    page.goto(f"{web_server.url}/studies/{prepared['id']}/results")
    table = page.locator("#reader-stats")
    expect(
        table.locator('tr[data-reader="Reader API"] td[data-metric="accuracy"]')
    ).to_contain_text("100.0 %", timeout=T)
    expect(table.locator('tr[data-reader="Reader K"]')).to_be_visible(timeout=T)
    for plot in ("#plot-confusion", "#plot-roc", "#plot-clicks"):
        page.wait_for_function("(s) => document.querySelector(s).naturalWidth > 300", arg=plot)
    screenshot(page, "study-results")
    page.goto(f"{web_server.url}/studies/{prepared['id']}/report")
    expect(page.locator("h1")).to_contain_text("Visual Turing Test", timeout=T)
    expect(page.locator("td.definition").first).to_contain_text("true positives", timeout=T)
    screenshot(page, "study-report")
