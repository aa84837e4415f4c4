"""Segment several volumes from the volume list, by mouse (1366×768) and by keyboard (800 px
wide); each row's Segmentation column follows its job, and the volume page lists the result.

The images are small noise volumes (24×20×16 voxels): the demo model runs on each in seconds,
so the batch is followed to its end.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.app.api_support import ct_array, nifti_bytes
from tests.browser.conftest import log_in, screenshot

JOB_TIMEOUT_MS = 600_000  # a loaded 2-core machine runs the demo model slowly


@pytest.fixture(scope="module")
def researcher(web_server) -> tuple[str, str]:
    return web_server.create_user("researcher")


@pytest.fixture(scope="module")
def images(web_server, researcher) -> list[int]:
    client = web_server.login(*researcher)
    ids = []
    for seed in range(3):
        answer = client.post("/api/v1/volumes", params={"name": f"scan-{seed}.nii.gz"},
                             content=nifti_bytes(ct_array(seed)))  # fmt: skip
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    client.close()
    return ids


def _tab_page(browser, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    return context, tab


def _row(page, volume_id: int):
    return page.locator(f"tr[data-volume='{volume_id}']")


def _wait_done(page, volume_id: int) -> int:
    cell = _row(page, volume_id).locator(".segmentation-cell")
    expect(cell).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    expect(cell.locator(".badge")).to_have_text("succeeded")
    return int(cell.get_attribute("data-segmentation"))


def test_segment_selected_by_mouse(browser, web_server, researcher, images):
    context, page = _tab_page(browser, 1366, 768)
    try:
        log_in(page, web_server, *researcher)
        page.goto(f"{web_server.url}/volumes")
        button = page.locator("#batch-segment")
        expect(page.locator("#batch-model")).to_have_value("demo")
        expect(button).to_be_disabled()  # nothing chosen yet
        first, second = images[0], images[2]
        _row(page, first).locator("input.pick-volume").click()
        _row(page, second).locator("input.pick-volume").click()
        expect(button).to_have_text("Segment selected (2)")
        expect(page.locator("#select-all")).to_have_js_property("indeterminate", True)
        button.click()
        expect(page.locator("#batch-status")).to_contain_text("Queued 2 segmentation(s)")
        for volume_id in (first, second):
            expect(_row(page, volume_id).locator(".segmentation-cell a")).to_have_text(
                re.compile(r"Segmentation \d+")
            )
        expect(_row(page, images[1]).locator(".segmentation-cell")).to_have_text("none yet")
        expect(button).to_be_disabled()  # the boxes are cleared once queued
        screenshot(page, "batch-mouse-queued")
        done = [_wait_done(page, volume_id) for volume_id in (first, second)]
        screenshot(page, "batch-mouse-done")

        # the results, per volume: the volume page lists its segmentation with status and link
        page.goto(f"{web_server.url}/volumes/{second}")
        link = page.locator(f"a[href='/segmentations/{done[1]}']")
        entry = page.locator("#segmentation-list li", has=link)
        expect(entry).to_contain_text(f"Segmentation {done[1]}")
        expect(entry.locator(".badge")).to_have_text("succeeded")
        entry.locator("a").click()
        page.wait_for_url(re.compile(rf"/segmentations/{done[1]}$"))
        expect(page.locator("#segment-progress")).to_have_attribute("data-status", "succeeded")
        # back on the list, the server renders what the script showed
        page.goto(f"{web_server.url}/volumes")
        cell = _row(page, first).locator(".segmentation-cell")
        expect(cell.locator(f"a[href='/segmentations/{done[0]}']")).to_be_visible()
        expect(cell.locator(".badge")).to_have_text("succeeded")
    finally:
        context.close()


def test_segment_selected_by_keyboard_800_px_wide(browser, web_server, researcher, images):
    context, page = _tab_page(browser, 800, 900)
    try:
        log_in(page, web_server, *researcher)
        page.goto(f"{web_server.url}/volumes")
        expect(page.locator("#batch-model")).to_have_value("demo")
        # nothing sticks out sideways at this width
        assert page.evaluate("document.documentElement.scrollWidth") <= 800
        page.locator("#batch-model").focus()
        page.keyboard.press("Tab")  # the button is disabled: focus goes on to "select all"
        expect(page.locator("#select-all")).to_be_focused()
        page.keyboard.press("Tab")
        newest = _row(page, images[2]).locator("input.pick-volume")  # newest first
        expect(newest).to_be_focused()
        page.keyboard.press("Space")
        expect(newest).to_be_checked()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        button = page.locator("#batch-segment")
        expect(button).to_be_focused()
        expect(button).to_have_text("Segment selected (1)")
        screenshot(page, "batch-keyboard-800-chosen")
        page.keyboard.press("Enter")
        expect(page.locator("#batch-status")).to_contain_text("Queued 1 segmentation(s)")
        segmentation_id = _wait_done(page, images[2])
        cell = _row(page, images[2]).locator(".segmentation-cell")
        expect(cell.locator("a").first).to_have_attribute(
            "href", f"/segmentations/{segmentation_id}"
        )
        expect(cell.locator("a.all-segmentations")).to_have_text("all 2")  # the mouse test's too
        screenshot(page, "batch-keyboard-800-done")
    finally:
        context.close()
