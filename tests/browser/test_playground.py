"""The synthesis playground in Chromium: click in the viewer → preview in place → apply → a new
volume with a tumor at the clicked voxel (checked through the API)."""

from __future__ import annotations

import gzip
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest
from playwright.sync_api import expect
from scipy import ndimage

from tests.browser.conftest import canvas_pixels, changed_fraction, log_in, screenshot
from tests.browser.test_main_pages import wait_for_render

T = 60_000


@pytest.fixture(scope="module")
def researcher(web_server) -> tuple[str, str]:
    return web_server.create_user("researcher")


@pytest.fixture(scope="module")
def scan(web_server, researcher, phantom_files) -> dict:
    from syntumor_core.phantom import LABELS

    image_path, labels_path = phantom_files
    client = web_server.login(*researcher)
    try:
        image = client.post("/api/v1/volumes", params={"name": image_path.name},
                            content=image_path.read_bytes())  # fmt: skip
        assert image.status_code in (200, 201), image.text
        legend = json.dumps({str(v): name for name, v in LABELS.items()})
        labels = client.post("/api/v1/volumes", params={"name": labels_path.name, "kind": "label",
                             "image_id": image.json()["id"], "labels": legend},
                             content=labels_path.read_bytes())  # fmt: skip
        assert labels.status_code in (200, 201), labels.text
    finally:
        client.close()
    return {"image": image.json(), "labels": labels.json()}


@pytest.mark.slow
def test_click_to_place_preview_and_apply(page, web_server, researcher, scan):
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{scan['image']['id']}")
    canvas = page.locator("#tile-main canvas")
    wait_for_render(canvas)
    expect(page.locator("#pg-mask-help")).to_have_text("The liver is label 1 of this mask.")
    page.check("input[name=layout][value=axial]")
    page.click('button[data-preset="liver"]')
    page.select_option("#pg-type", "small")
    page.fill("#pg-diameter", "16")
    page.locator("#pg-place").click()
    expect(page.locator("#pg-place")).to_have_attribute("aria-pressed", "true")
    playground = page.locator("#playground")
    placed = None
    box = canvas.bounding_box()
    reset = "() => { document.querySelector('#playground').dataset.preview = ''; }"
    settled = ("() => /^(refused|\\d+)$/.test("
               "document.querySelector('#playground').dataset.preview || '')")  # fmt: skip
    page.evaluate(reset)  # a click outside the body: refused, and not kept
    page.mouse.click(box["x"] + 0.03 * box["width"], box["y"] + 0.03 * box["height"])
    page.wait_for_function(settled, timeout=T)
    assert playground.get_attribute("data-preview") == "refused"
    expect(page.locator("#pg-status")).to_contain_text("Not placed: the point")
    expect(page.locator("#pg-tumors li")).to_have_count(0)
    expect(page.locator("#pg-apply")).to_be_disabled()
    for fx, fy in [(0.35, 0.45), (0.4, 0.4), (0.3, 0.5), (0.45, 0.35), (0.35, 0.6)]:
        page.evaluate(reset)
        box = canvas.bounding_box()
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_function(settled, timeout=T)
        if playground.get_attribute("data-preview") != "refused":
            item = page.locator("#pg-tumors li").last
            placed = [int(v) for v in item.get_attribute("data-voxel").split(",")]
            placed_at = (fx, fy)
            break
        expect(page.locator("#pg-tumors li")).to_have_count(0)  # refused: not kept
    assert placed is not None, "no click landed deep enough in the liver"
    expect(page.locator("#pg-status")).to_have_text(re.compile(r"^Preview of 1 tumor\(s\) in"))
    page.wait_for_timeout(300)
    with_tumor = canvas_pixels(canvas)
    screenshot(page, "playground-preview")
    page.locator("#pg-tumors li button").click()  # removed: the preview goes, the image is back
    expect(playground).to_have_attribute("data-preview", "none")
    page.wait_for_timeout(300)
    without = canvas_pixels(canvas)
    assert changed_fraction(without, with_tumor) > 0.002  # the tumor was drawn in place
    page.locator("#pg-place").click()  # stop placing: a click only moves the crosshair
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    expect(page.locator("#pg-tumors li")).to_have_count(0)
    page.locator("#pg-place").click()  # placing again (the viewer scrolls into view)
    box = canvas.bounding_box()
    page.mouse.click(
        box["x"] + placed_at[0] * box["width"], box["y"] + placed_at[1] * box["height"]
    )
    expect(page.locator("#pg-tumors li")).to_have_count(1)
    expect(page.locator("#pg-status")).to_have_text(re.compile(r"^Preview of 1 tumor\(s\) in"))
    # Every knob asks for a new preview (realistic's rim and mass effect once it is chosen).
    expect(page.locator("#pg-rim")).to_be_disabled()
    page.select_option("#pg-profile", "realistic")
    for knob, value in [("#pg-texture", "4"), ("#pg-rim", "0.6"), ("#pg-mass", "0.5"),
                        ("#pg-drop", "100"), ("#pg-diameter", "14")]:  # fmt: skip
        shown = playground.get_attribute("data-preview")
        page.fill(knob, value)
        expect(playground).not_to_have_attribute("data-preview", shown)
        page.wait_for_function(
            "() => /^\\d+$/.test(document.querySelector('#playground').dataset.preview || '')"
        )
    expect(page.locator("#pg-mass-value")).to_have_text("0.5")
    page.select_option("#pg-profile", "paper")  # (realistic carves vessels out of the tumor)

    page.locator("#pg-apply").click()
    page.wait_for_url(re.compile(r"/syntheses/\d+$"), timeout=T)
    synthesis_id = int(page.url.rsplit("/", 1)[1])
    client = web_server.login(*researcher)
    try:
        job = client.get(f"/api/v1/syntheses/{synthesis_id}").json()["job"]
        web_server.wait_for_job(client, job["id"])
        done = client.get(f"/api/v1/syntheses/{synthesis_id}").json()
        assert done["job"]["status"] == "succeeded", done["job"]
        assert done["centers"] == [placed]
        label = client.get(done["downloads"]["label"]).content
    finally:
        client.close()
    data = gzip.decompress(label) if label[:2] == b"\x1f\x8b" else label
    array = np.asarray(nib.Nifti1Image.from_bytes(io.BytesIO(data).getvalue()).dataobj)
    tumor = array == 2
    assert tumor.any()
    spacing = np.array(scan["image"]["spacing_mm"])
    mass = np.array(ndimage.center_of_mass(tumor))
    assert np.linalg.norm((mass - placed) * spacing) <= max(5.0, float(np.linalg.norm(spacing)))


@pytest.mark.slow
def test_a_tumor_placed_by_keyboard_at_1366x768(browser, web_server, researcher, scan):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{scan['image']['id']}")
    canvas = page.locator("#tile-main canvas")
    wait_for_render(canvas)
    before = page.locator('.slice-number[data-axis="0"]').text_content()
    page.locator("input[name=slice-sagittal]").focus()
    for _ in range(3):
        page.keyboard.press("ArrowLeft")  # the sagittal slider moves the crosshair
    expect(page.locator('.slice-number[data-axis="0"]')).not_to_have_text(before)
    page.locator("#pg-add").focus()
    page.keyboard.press("Enter")
    playground = page.locator("#playground")
    page.wait_for_function(
        "() => /^(refused|\\d+)$/.test(document.querySelector('#playground').dataset.preview || '')",
        timeout=T,
    )
    if playground.get_attribute("data-preview") == "refused":  # the centre is not deep in liver
        expect(page.locator("#pg-status")).to_contain_text("Not placed: the point")
        expect(page.locator("#pg-tumors li")).to_have_count(0)
    else:
        expect(page.locator("#pg-tumors li")).to_have_count(1)
        expect(page.locator("#pg-apply")).to_be_enabled()
        page.locator("#pg-tumors li button").focus()
        page.keyboard.press("Enter")  # removed from the keyboard too
        expect(page.locator("#pg-tumors li")).to_have_count(0)
    screenshot(page, "playground-keyboard-1366x768")
    context.close()
