"""The CT viewer's tools in Chromium at 1366×768: slice sliders, maximising a tile, the length
measurement and the ROI, and a layout whose tiles, readout and sliders fit the screen."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHANTOM_SPACING_MM, canvas_pixels, log_in, screenshot
from tests.browser.test_main_pages import (  # noqa: F401  (fixtures)
    researcher,
    uploaded,
    wait_for_change,
    wait_for_render,
)

WIDTH, HEIGHT = 1366, 768


@pytest.fixture
def viewer_page(browser, web_server, researcher, uploaded):  # noqa: F811
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(30_000)
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{uploaded['image']['id']}")
    canvas = page.locator("#tile-main canvas")
    wait_for_render(canvas)
    page.locator("#viewer").evaluate("(panel) => panel.scrollIntoView({block: 'start'})")
    yield page, canvas
    context.close()


def _drag(page, canvas, start, end):
    """Drag with the left button between two points given as fractions of the canvas."""
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=8)
    page.mouse.up()


def _voxels(readout, name: str) -> list[int]:
    return [int(v) for v in readout.get_attribute(name).split(",")]


@pytest.mark.slow
def test_viewer_fits_the_screen_and_its_slice_sliders_move_the_planes(viewer_page):
    page, canvas = viewer_page
    for selector in ("#tile-main canvas", "#tile-main .hu-readout", ".slice-slider input"):
        for element in page.locator(selector).all():
            box = element.bounding_box()
            assert 0 <= box["y"] and box["y"] + box["height"] <= HEIGHT, (selector, box)
    screenshot(page, "viewer-1366x768")

    axial = page.locator("input[name=slice-axial]")
    number = page.locator('.slice-number[data-axis="2"]')
    count = int(axial.get_attribute("max"))
    assert count == 48  # the phantom's 48 axial slices
    expect(number).to_have_text(re.compile(rf"^\d+ / {count}$"))
    before = canvas_pixels(canvas)
    box = axial.bounding_box()
    page.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)  # the slider's left end
    expect(number).to_have_text(f"1 / {count}")
    wait_for_change(canvas, before, minimum=0.005, what="axial slice 1")
    axial.focus()
    page.keyboard.press("ArrowRight")  # the keyboard moves it too
    expect(number).to_have_text(f"2 / {count}")
    coronal = page.locator('.slice-number[data-axis="1"]').text_content()
    box = canvas.bounding_box()  # a click in the axial tile (bottom left) moves the coronal plane
    page.mouse.click(box["x"] + 0.2 * box["width"], box["y"] + 0.62 * box["height"])
    expect(page.locator('.slice-number[data-axis="1"]')).not_to_have_text(coronal)
    expect(number).to_have_text(f"2 / {count}")


@pytest.mark.slow
def test_double_click_or_m_maximises_a_tile_and_returns(viewer_page):
    page, canvas = viewer_page
    box = canvas.bounding_box()
    page.mouse.dblclick(box["x"] + 0.25 * box["width"], box["y"] + 0.75 * box["height"])
    expect(page.locator("input[name=layout][value=axial]")).to_be_checked()
    expect(page.locator("#viewer")).to_have_attribute("data-layout", "axial")
    page.mouse.dblclick(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    expect(page.locator("input[name=layout][value=multiplanar]")).to_be_checked()
    page.mouse.click(box["x"] + 0.25 * box["width"], box["y"] + 0.25 * box["height"])  # coronal
    canvas.press("m")
    expect(page.locator("input[name=layout][value=coronal]")).to_be_checked()
    canvas.press("m")
    expect(page.locator("input[name=layout][value=multiplanar]")).to_be_checked()


@pytest.mark.slow
def test_length_measurement_matches_the_voxel_geometry(viewer_page):
    page, canvas = viewer_page
    page.check("input[name=layout][value=axial]")
    page.check("input[name=tool][value=measure]")
    _drag(page, canvas, (0.35, 0.5), (0.65, 0.5))
    readout = page.locator(".measure-readout")
    expect(readout).to_contain_text("Length")
    expect(readout).to_have_attribute("data-kind", "length")
    start, end = _voxels(readout, "data-vox-start"), _voxels(readout, "data-vox-end")
    spacing = PHANTOM_SPACING_MM[0]
    expected = spacing * sum((a - b) ** 2 for a, b in zip(start, end, strict=True)) ** 0.5
    length = float(readout.get_attribute("data-value"))
    assert expected > 10 * spacing  # a real segment, across many voxels
    assert abs(length - expected) <= 1.5 * spacing, (length, expected, start, end)
    assert start[2] == end[2]  # drawn within one axial slice
    assert f"Length {length:.1f} mm" in readout.text_content()
    screenshot(page, "viewer-measurement")


@pytest.mark.slow
def test_roi_reports_hu_statistics_and_area(viewer_page):
    page, canvas = viewer_page
    page.check("input[name=layout][value=axial]")
    page.check("input[name=tool][value=roi]")
    _drag(page, canvas, (0.45, 0.45), (0.55, 0.55))
    readout = page.locator(".measure-readout")
    expect(readout).to_have_attribute("data-kind", "roi")
    text = readout.text_content()
    start, end = _voxels(readout, "data-vox-start"), _voxels(readout, "data-vox-end")
    side = [abs(a - b) + 1 for a, b in zip(start, end, strict=True)]
    assert sorted(side)[0] == 1 and sorted(side)[1] > 1  # drawn in one slice
    # The voxels whose centres lie in the ellipse inscribed in the dragged box.
    low = [min(a, b) for a, b in zip(start, end, strict=True)]
    grids = np.meshgrid(*[np.arange(lo, lo + n) for lo, n in zip(low, side, strict=True)],
                        indexing="ij")  # fmt: skip
    inside = sum(((g - (lo + (n - 1) / 2)) / (n / 2)) ** 2 if n > 1 else 0
                 for g, lo, n in zip(grids, low, side, strict=True)) <= 1 + 1e-9  # fmt: skip
    voxels = int(inside.sum())
    assert voxels < side[0] * side[1] * side[2]  # fewer than the box: its corners are out
    area_cm2 = voxels * PHANTOM_SPACING_MM[0] * PHANTOM_SPACING_MM[1] / 100
    area = re.search(r"area (\d+\.\d+) cm² \((\d+) voxels\)", text)
    assert int(area[2]) == voxels
    assert abs(float(area[1]) - area_cm2) <= 0.006, (area[1], area_cm2)
    numbers = dict(re.findall(r"(mean|SD|min|max) (-?\d+(?:\.\d+)?)", text))
    low, mean, high = float(numbers["min"]), float(numbers["mean"]), float(numbers["max"])
    assert -1100 <= low <= mean <= high <= 3000
    assert float(numbers["SD"]) >= 0
    # The crosshair tool again: a drag no longer measures.
    page.check("input[name=tool][value=crosshair]")
    _drag(page, canvas, (0.3, 0.3), (0.6, 0.6))
    expect(readout).to_have_text(text)


@pytest.fixture(scope="module")
def segmented_tumor(web_server, researcher, tmp_path_factory):  # noqa: F811
    """A phantom with a large synthetic liver tumor, uploaded and segmented by the demo model."""
    from syntumor_core.volume import Volume, save_nifti
    from tests.app.studies_support import phantom_case

    image, _ = phantom_case(3, (96, 80, 48), PHANTOM_SPACING_MM, tumor_seed=4, tumor_type="large")
    path = save_nifti(
        Volume(image.array, image.affine), tmp_path_factory.mktemp("t") / "tumor.nii.gz"
    )
    client = web_server.login(*researcher)
    try:
        uploaded = client.post(
            "/api/v1/volumes", params={"name": path.name}, content=path.read_bytes()
        )
        assert uploaded.status_code == 201, uploaded.text
        made = client.post("/api/v1/segmentations", json={
            "image_id": uploaded.json()["id"], "model": "demo", "mode": "parity", "overlap": 0})  # fmt: skip
        assert made.status_code == 202, made.text
        job = web_server.wait_for_job(client, made.json()["job"]["id"], timeout=600)
        assert job["status"] == "succeeded", job
        segmentation = client.get(f"/api/v1/segmentations/{made.json()['id']}").json()
    finally:
        client.close()
    assert segmentation["lesions"], "the demo model found no tumor in the large synthetic one"
    return segmentation


@pytest.mark.slow
def test_show_lesion_centres_on_tumor_and_scrolls_the_viewer_into_view(
    browser,
    web_server,
    researcher,  # noqa: F811
    segmented_tumor,
):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/segmentations/{segmented_tumor['id']}")
    wait_for_render(page.locator("#tile-main canvas"))
    button = page.locator("#lesions button", has_text="Show lesion 1")
    button.scroll_into_view_if_needed()
    assert page.locator("#viewer").bounding_box()["y"] < 0  # the viewer is above the fold
    button.click()
    expect(page.locator("#tile-main .hu-readout")).to_contain_text("tumor")
    viewer = page.locator("#viewer").bounding_box()
    assert -2 <= viewer["y"] < HEIGHT / 4, viewer  # scrolled into view
    screenshot(page, "viewer-show-lesion")
    context.close()


def _counts(page) -> dict[int, int]:
    import json

    raw = page.locator("#viewer").get_attribute("data-counts") or "{}"
    return {int(value): count for value, count in json.loads(raw).items()}


@pytest.mark.slow
def test_paint_erase_undo_and_save_a_corrected_mask(
    viewer_page,
    web_server,
    researcher,  # noqa: F811
    uploaded,  # noqa: F811
    tmp_path,
):
    import nibabel as nib
    import numpy as np

    page, canvas = viewer_page
    source = uploaded["labels"]
    page.select_option("select[name=overlay]", str(source["id"]))
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", str(source["id"]))
    page.check("input[name=layout][value=axial]")
    page.check("input[name=tool][value=paint]")
    expect(page.locator("fieldset.paint")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#viewer').dataset.counts")
    original = _counts(page)
    assert original.get(1, 0) > 1000  # the organ map opened for editing: the liver is there

    page.select_option("select[name=paint-value]", "7")
    page.fill("input[name=brush]", "4")
    _drag(page, canvas, (0.40, 0.10), (0.60, 0.10))  # a stroke near the image's top edge
    expect(page.locator("#viewer")).not_to_have_attribute("data-counts", "")
    page.wait_for_function(
        "(n) => JSON.parse(document.querySelector('#viewer').dataset.counts)['7'] > n",
        arg=original.get(7, 0),
    )
    painted = _counts(page)
    page.select_option("select[name=paint-value]", "0")  # erase part of the stroke
    _drag(page, canvas, (0.48, 0.10), (0.52, 0.10))
    page.wait_for_function(
        "(n) => JSON.parse(document.querySelector('#viewer').dataset.counts)['7'] < n",
        arg=painted[7],
    )
    page.locator("button[data-paint=undo]").click()  # the erase undone
    page.wait_for_function(
        "(n) => JSON.parse(document.querySelector('#viewer').dataset.counts)['7'] === n",
        arg=painted[7],
    )
    assert _counts(page) == painted
    page.locator("button[data-paint=save]").click()
    expect(page.locator("#viewer")).to_have_attribute("data-saved", re.compile(r"^\d+$"))
    saved_id = int(page.locator("#viewer").get_attribute("data-saved"))
    assert saved_id != source["id"]
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", str(saved_id))

    client = web_server.login(*researcher)
    try:
        saved = client.get(f"/api/v1/volumes/{saved_id}").json()
        data = client.get(saved["download_url"]).content
        again = client.get(f"/api/v1/volumes/{source['id']}").json()
    finally:
        client.close()
    assert saved["kind"] == "label" and saved["image_id"] == uploaded["image"]["id"]
    assert saved["labels"] == source["labels"]  # the source's legend goes along
    assert again["sha256"] == source["sha256"]  # the original label map is untouched
    path = tmp_path / "saved.nii"
    path.write_bytes(data)
    values, counts = np.unique(np.asarray(nib.load(path).dataobj), return_counts=True)
    in_file = {int(v): int(n) for v, n in zip(values, counts, strict=True) if v != 0}
    assert in_file == painted
