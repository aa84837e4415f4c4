"""Readers take a 6-case study in Chromium: by mouse only, by keyboard only, and both mixed.

Each way ends with the answers (answer, confidence, mark) read back from the owner's export.
Other tests click every control of the reader page once, check that the page fits 1440×900,
1366×768 and 800 px wide without scrolling, and that the window and view a reader chose
survive a reload and the next case. Screenshots go to tests/artifacts/.
"""

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
SIZES = [(1440, 900), (1366, 768), (800, 1000)]
# Every control a reader needs for answering, moving between cases and viewing.
ANSWER_CONTROLS = ["[data-answer]", "[data-confidence]", "#mark", "#submit", "#prev", "#next"]
VIEW_CONTROLS = ["[data-window]", "[data-view]", "#slice"]


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
        "acknowledge": ["spacing_differs"],  # the arms' scans differ in spacing (a known cue)
    }  # fmt: skip
    created = study_owner.client.post("/api/v1/studies", json=spec)
    assert created.status_code == 201, created.text
    prepared = wait_ready(study_owner, created.json()["id"])
    assert prepared["status"] == "ready", prepared["status_message"]
    return study_owner, prepared


@pytest.fixture
def sized_page(browser, request):
    """A page of the size given by ``request.param`` (width, height)."""
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def watch(page) -> list[str]:
    """Script errors and failed requests (any status >= 400, e.g. a missing favicon)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    return problems


def _rendered(page) -> float:
    """Share of the viewer canvas that is not the dark background (NiiVue drew the CT)."""
    return float((np.abs(_pixels(page).astype(int) - [13, 18, 23]).max(axis=-1) > 20).mean())


def _pixels(page) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"))


def _plan(readings: list[dict]) -> list[str]:
    """The answers to give: right on the first four cases, wrong on the last two."""
    right = {"synthetic": "synthetic", "real": "real"}
    wrong = {"synthetic": "real", "real": "synthetic"}
    return [(right if i < 4 else wrong)[r["truth"]] for i, r in enumerate(readings)]


def _new_reader(web_server, study, label: str) -> tuple[dict, list[dict]]:
    study_owner, prepared = study
    invitation, _ = invite(web_server, study_owner, prepared["id"], label)
    readings = readings_of(web_server, invitation["reader"]["id"])
    assert len(readings) == 6
    return invitation, readings


def _open_study(page, web_server, invitation, *, by_mouse: bool) -> None:
    """Open the invitation, fill the profile, start the test; case 1 is shown."""
    page.goto(invitation["invitation_url"])
    expect(page).to_have_url(f"{web_server.url}/read", timeout=T)
    page.fill("input[name=experience_years]", "4")
    page.fill("input[name=specialty]", "abdominal radiology")
    if by_mouse:
        page.locator("form button[type=submit]").click()
        page.locator("#start").click()
    else:
        page.keyboard.press("Enter")
        expect(page.locator("#start")).to_be_focused(timeout=T)
        page.keyboard.press("Enter")
    expect(page.locator("#position")).to_have_text("Case 1 of 6", timeout=T)
    _wait_drawn(page)


def _wait_drawn(page) -> None:
    expect(page.locator("#viewer-status")).to_be_hidden(timeout=T)
    page.wait_for_function("() => performance.getEntriesByName('reader:drawn').length > 0")


def _click_image(page, fx: float = 0.3, fy: float = 0.7) -> str:
    """Click the viewer at a fraction of its size (the axial tile of the 2×2 layout)."""
    box = page.locator("#gl").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    return page.locator("#slice-number").text_content()


def _stored(study, label: str) -> list[dict]:
    """The reader's stored answers in reading order, from the owner's export."""
    study_owner, prepared = study
    text = study_owner.client.get(f"/api/v1/studies/{prepared['id']}/export/answers.csv").text
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["reader"] == label]
    return sorted(rows, key=lambda row: int(row["position"]))


def _check_stored(study, label: str, answers: list[str], confidences: list[str], marked: set[int]):
    rows = _stored(study, label)
    assert [row["answer"] for row in rows] == answers
    assert [row["confidence"] for row in rows] == confidences
    assert {i for i, row in enumerate(rows) if row["click_i"]} == marked
    assert all(int(row["time_ms"]) > 0 for row in rows)
    assert {row["specialty"] for row in rows} == {"abdominal radiology"}


def _finish(page, web_server, problems) -> None:
    expect(page).to_have_url(f"{web_server.url}/read/done", timeout=T)
    expect(page.locator("main")).to_contain_text("You answered 6 of 6 cases", timeout=T)
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.parametrize("sized_page", [(1366, 768)], indirect=True)
def test_reader_completes_the_study_by_mouse_only(sized_page, web_server, study):
    page = sized_page
    invitation, readings = _new_reader(web_server, study, "Reader mouse")
    plan = _plan(readings)
    confidences = ["4", "2", "5", "1", "3", "4"]
    problems = watch(page)
    _open_study(page, web_server, invitation, by_mouse=True)
    for index in range(6):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _wait_drawn(page)
        page.locator(f'button[data-answer="{plan[index]}"]').click()
        page.locator(f'button[data-confidence="{confidences[index]}"]').click()
        if index == 1:  # click the image to move the crosshair, then mark it
            _click_image(page)
            page.locator("#mark").click()
            expect(page.locator("#mark-status")).to_contain_text("marked at voxel", timeout=T)
        expect(page.locator(f'button[data-confidence="{confidences[index]}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        if index == 3:  # back to the answered case 3 and forward again, by the buttons
            page.locator("#prev").click()
            expect(page.locator("#position")).to_have_text("Case 3 of 6", timeout=T)
            expect(page.locator("#message")).to_have_text("Answered (final).", timeout=T)
            expect(page.locator('button[data-answer="real"]')).to_be_disabled()
            page.locator("#next").click()
            expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)
            _wait_drawn(page)
            page.locator(f'button[data-answer="{plan[index]}"]').click()
            page.locator(f'button[data-confidence="{confidences[index]}"]').click()
        page.locator("#submit").click()
    _finish(page, web_server, problems)
    _check_stored(study, "Reader mouse", plan, confidences, marked={1})


@pytest.mark.slow
@pytest.mark.parametrize("sized_page", [(1440, 900)], indirect=True)
def test_reader_completes_the_study_by_keyboard_and_resumes(sized_page, web_server, study):
    page = sized_page
    invitation, readings = _new_reader(web_server, study, "Reader K")
    plan = _plan(readings)
    problems = watch(page)

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
    _wait_drawn(page)
    page.wait_for_timeout(500)
    assert _rendered(page) > 0.05, "the viewer shows nothing"
    page.keyboard.press("r")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    for index in (1, 2):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _wait_drawn(page)
        page.keyboard.press(plan[index][0])
        page.keyboard.press("3")
        if index == 2:
            page.keyboard.press("x")
            expect(page.locator("#mark-status")).to_contain_text("marked at voxel", timeout=T)
        page.keyboard.press("Enter")
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)

    page.reload()  # leave mid-way: the same case comes back, the answers stay
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)
    expect(page.locator("#answered")).to_have_text("3 answered", timeout=T)
    page.goto(f"{web_server.url}/read")
    expect(page.locator("#start")).to_contain_text("Resume at case 4 of 6", timeout=T)
    expect(page.locator("#start")).to_be_focused(timeout=T)
    page.keyboard.press("Enter")
    expect(page.locator("#position")).to_have_text("Case 4 of 6", timeout=T)
    _wait_drawn(page)
    page.keyboard.press("p")  # back to an answered case: it is final
    expect(page.locator("#position")).to_have_text("Case 3 of 6", timeout=T)
    expect(page.locator("#message")).to_have_text("Answered (final).", timeout=T)
    page.keyboard.press("n")
    for index in (3, 4, 5):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _wait_drawn(page)
        page.keyboard.press(plan[index][0])
        page.keyboard.press("5" if index == 5 else "2")
        page.keyboard.press("Enter")
    _finish(page, web_server, problems)
    answers = ["real", *plan[1:]]  # the first case got "r" whatever its truth
    _check_stored(study, "Reader K", answers, ["4", "3", "3", "2", "2", "5"], marked={2})


@pytest.mark.slow
@pytest.mark.parametrize("sized_page", [(800, 1000)], indirect=True)
def test_reader_completes_the_study_mouse_and_keyboard_mixed(sized_page, web_server, study):
    """Keyboard answer, a click on the image, then Enter; and the other way round."""
    page = sized_page
    invitation, readings = _new_reader(web_server, study, "Reader mixed")
    plan = _plan(readings)
    problems = watch(page)
    _open_study(page, web_server, invitation, by_mouse=False)
    for index in range(6):
        expect(page.locator("#position")).to_have_text(f"Case {index + 1} of 6", timeout=T)
        _wait_drawn(page)
        if index % 2 == 0:  # keys for the answer, a click on the image, Enter
            page.keyboard.press(plan[index][0])
            page.keyboard.press("2")
            _click_image(page, 0.25, 0.75)
            if index == 4:
                page.keyboard.press("x")  # mark where the crosshair now is
                expect(page.locator("#mark-status")).to_contain_text("marked at voxel")
            page.keyboard.press("Enter")
        else:  # a click for the answer, a key for the confidence, a click to submit
            page.locator(f'button[data-answer="{plan[index]}"]').click()
            page.keyboard.press("5")
            page.locator("#submit").click()
    _finish(page, web_server, problems)
    _check_stored(study, "Reader mixed", plan, ["2", "5"] * 3, marked={4})


@pytest.mark.slow
@pytest.mark.parametrize("sized_page", [(1366, 768)], indirect=True)
def test_every_reader_control_once(sized_page, web_server, study):
    page = sized_page
    invitation, readings = _new_reader(web_server, study, "Reader controls")
    problems = watch(page)
    _open_study(page, web_server, invitation, by_mouse=True)
    page.wait_for_timeout(300)

    before = _pixels(page)
    for name in ("abdomen", "bone", "lung", "liver"):  # each window is pressed and redraws
        page.locator(f'button[data-window="{name}"]').click()
        expect(page.locator(f'button[data-window="{name}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(page.locator('button[data-window][aria-pressed="true"]')).to_have_count(1)
        if name == "bone":
            page.wait_for_timeout(300)
            assert np.abs(_pixels(page).astype(int) - before).max(axis=-1).mean() > 5
    planes = ["Axial", "Axial", "Coronal", "Sagittal", "3-D"]
    for view in (1, 2, 3, 4, 0):  # each view is pressed, the slider follows its plane
        page.locator(f'button[data-view="{view}"]').click()
        expect(page.locator(f'button[data-view="{view}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(page.locator("#slice-plane")).to_have_text(planes[view])
        if view == 4:
            expect(page.locator("#slice")).to_be_disabled()
        else:
            expect(page.locator("#slice")).to_be_enabled()

    slider = page.locator("#slice")  # the slider, by mouse: its left end is slice 1
    count = int(slider.get_attribute("max"))
    assert count > 10
    box = slider.bounding_box()
    page.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)
    expect(page.locator("#slice-number")).to_have_text(f"1 / {count}")
    page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    expect(page.locator("#slice-number")).to_have_text(f"{count} / {count}")
    shown = _click_image(page, 0.3, 0.7)  # a click in the axial tile keeps its slice
    assert shown == f"{count} / {count}"
    _click_image(page, 0.3, 0.3)  # a click in the coronal tile moves the axial slice
    expect(page.locator("#slice-number")).not_to_have_text(f"{count} / {count}")

    page.locator("#help summary").click()
    expect(page.locator("#help")).to_have_attribute("open", "")
    page.locator("#help summary").click()
    expect(page.locator("#help")).not_to_have_attribute("open", "")

    for answer in ("real", "synthetic", "unsure"):
        page.locator(f'button[data-answer="{answer}"]').click()
        expect(page.locator(f'button[data-answer="{answer}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
    expect(page.locator("button[data-confidence]").first).to_be_disabled()  # unsure: no confidence
    page.locator('button[data-answer="synthetic"]').click()
    for level in range(1, 6):
        page.locator(f'button[data-confidence="{level}"]').click()
        expect(page.locator(f'button[data-confidence="{level}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(page.locator('button[data-confidence][aria-pressed="true"]')).to_have_count(1)
    page.locator("#mark").click()
    expect(page.locator("#mark-status")).to_contain_text("marked at voxel")
    page.locator("#unmark").click()
    expect(page.locator("#mark-status")).to_have_text("no mark")
    expect(page.locator("#unmark")).to_be_hidden()

    page.locator("#next").click()
    expect(page.locator("#position")).to_have_text("Case 2 of 6", timeout=T)
    expect(page.locator('button[data-answer][aria-pressed="true"]')).to_have_count(0)  # unsent
    page.locator("#prev").click()
    expect(page.locator("#position")).to_have_text("Case 1 of 6", timeout=T)
    _wait_drawn(page)
    page.locator("#submit").click()
    expect(page.locator("#message")).to_contain_text("Choose an answer first", timeout=T)
    page.locator('button[data-answer="real"]').click()
    page.locator("#submit").click()
    expect(page.locator("#message")).to_contain_text("Choose your confidence first", timeout=T)
    page.locator('button[data-confidence="3"]').click()
    page.locator("#submit").click()
    expect(page.locator("#position")).to_have_text("Case 2 of 6", timeout=T)
    expect(page.locator("#answered")).to_have_text("1 answered", timeout=T)
    page.locator("a.reader-leave").click()
    expect(page).to_have_url(f"{web_server.url}/read", timeout=T)
    expect(page.locator("#start")).to_contain_text("Resume at case 2 of 6", timeout=T)
    assert not problems, problems
    assert [row["answer"] for row in _stored(study, "Reader controls")] == ["real"]


@pytest.mark.slow
def test_reader_page_fits_three_screen_sizes(browser, web_server, study):
    """No answer, navigation or viewer control below the fold; the viewer fills the page."""
    invitation, _ = _new_reader(web_server, study, "Reader sizes")
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        problems = watch(page)
        if (width, height) == SIZES[0]:
            _open_study(page, web_server, invitation, by_mouse=True)
        else:
            page.goto(invitation["invitation_url"])  # a new browser: the link again
            page.locator("#start").click()
            _wait_drawn(page)
        page.wait_for_timeout(500)
        page.locator('button[data-answer="synthetic"]').click()
        page.locator('button[data-confidence="4"]').click()
        screenshot(page, f"reader-{width}x{height}")
        scroll = page.evaluate("() => [document.documentElement.scrollHeight, innerHeight]")
        assert scroll[0] <= scroll[1], f"the page scrolls at {width}x{height}: {scroll}"
        for selector in ANSWER_CONTROLS + VIEW_CONTROLS:
            for element in page.locator(selector).all():
                box = element.bounding_box()
                assert box is not None, selector
                assert box["y"] >= 0 and box["y"] + box["height"] <= height, (selector, width, box)
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, width, box)
        viewer = page.locator("#gl").bounding_box()
        assert viewer["width"] * viewer["height"] > 0.4 * width * height, (width, viewer)
        assert _rendered(page) > 0.2, f"the 2×2 layout leaves the viewer mostly empty at {width}"
        assert not problems, problems
        context.close()


@pytest.mark.slow
@pytest.mark.parametrize("sized_page", [(1440, 900)], indirect=True)
def test_window_and_view_are_kept_across_reloads_and_cases(sized_page, web_server, study):
    page = sized_page
    invitation, _ = _new_reader(web_server, study, "Reader prefs")
    _open_study(page, web_server, invitation, by_mouse=True)
    page.locator('button[data-window="bone"]').click()
    page.locator('button[data-view="2"]').click()
    page.reload()
    _wait_drawn(page)
    expect(page.locator('button[data-window="bone"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('button[data-view="2"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#slice-plane")).to_have_text("Coronal")
    page.locator("#next").click()
    expect(page.locator("#position")).to_have_text("Case 2 of 6", timeout=T)
    _wait_drawn(page)
    expect(page.locator('button[data-window="bone"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('button[data-view="2"]')).to_have_attribute("aria-pressed", "true")


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

        from app.accounts import auth
        from app.db.tables import User

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
    for plot in ("#plot-confusion", "#plot-roc", "#plot-clicks"):
        page.wait_for_function("(s) => document.querySelector(s).naturalWidth > 300", arg=plot)
    screenshot(page, "study-results")
    page.goto(f"{web_server.url}/studies/{prepared['id']}/report")
    expect(page.locator("h1")).to_contain_text("Visual Turing Test", timeout=T)
    expect(page.locator("td.definition").first).to_contain_text("true positives", timeout=T)
    screenshot(page, "study-report")
