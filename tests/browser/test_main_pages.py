"""The main pages in a real browser: upload, the NiiVue volume viewer, segment, synthesize, jobs.

The viewer's canvas is read back through element screenshots (what the compositor shows), so
"renders", "the window changed the picture" and "the overlay appeared" are pixel statements.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    canvas_pixels,
    changed_fraction,
    log_in,
    non_background_fraction,
    screenshot,
)
from tests.live_server import LiveServer

expect.set_options(timeout=30_000)  # loading volumes into NiiVue takes seconds on a busy CPU
JOB_TIMEOUT_MS = 600_000  # generous: a loaded 2-core machine runs the demo model slowly
WORK_PAGES = ("/upload", "/volumes", "/synthesize", "/jobs")


def wait_for_pixels(locator, accept, timeout_s: float = 20.0, what: str = "rendering"):
    """Screenshots of ``locator`` until ``accept(pixels)`` holds; returns those pixels."""
    deadline = time.monotonic() + timeout_s
    while True:
        pixels = canvas_pixels(locator)
        if accept(pixels):
            return pixels
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for the {what}")
        time.sleep(0.25)


def wait_for_render(locator):
    return wait_for_pixels(
        locator, lambda p: non_background_fraction(p) > 0.2, what="viewer to draw the CT"
    )


def wait_for_change(locator, before, minimum: float = 0.02, what: str = "picture to change"):
    return wait_for_pixels(locator, lambda p: changed_fraction(before, p) > minimum, what=what)


@pytest.fixture(scope="module")
def researcher(web_server) -> tuple[str, str]:
    return web_server.create_user("researcher")


@pytest.fixture(scope="module")
def uploaded(web_server, researcher, phantom_files) -> dict:
    """The phantom CT and its organ labels, uploaded through the API by ``researcher``."""
    image_path, labels_path = phantom_files
    client = web_server.login(*researcher)
    try:
        image = client.post(
            "/api/v1/volumes", params={"name": image_path.name}, content=image_path.read_bytes()
        )
        assert image.status_code in (200, 201), image.text
        labels = client.post(
            "/api/v1/volumes",
            params={"name": labels_path.name, "kind": "label", "image_id": image.json()["id"]},
            content=labels_path.read_bytes(),
        )
        assert labels.status_code in (200, 201), labels.text
    finally:
        client.close()
    return {"image": image.json(), "labels": labels.json()}


def test_upload_page_opens_the_volume_viewer(page, web_server, researcher, phantom_files):
    image_path, labels_path = phantom_files
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/upload")
    page.set_input_files("#image-file", str(image_path))
    page.set_input_files("#label-file", str(labels_path))
    page.click("#upload-button")
    page.wait_for_url(re.compile(r"/volumes/\d+$"))
    volume_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("h1")).to_have_text("phantom_ct.nii.gz")
    expect(page.locator(".volume-facts")).to_contain_text("96 × 80 × 48 voxels")

    canvas = page.locator("#tile-main canvas")
    expect(page.locator("#viewer")).to_have_attribute("data-ready", "1")
    abdomen = wait_for_render(canvas)
    assert non_background_fraction(abdomen) > 0.2
    screenshot(page, "volume-page-abdomen-window")

    # Window presets (keyboard) and the free window change what is drawn.
    page.focus("button[data-preset=bone]")
    page.keyboard.press("Enter")
    expect(page.locator("button[data-preset=bone]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("input[name=window-width]")).to_have_value("1800")
    bone = wait_for_change(canvas, abdomen, what="bone window to change the picture")
    assert changed_fraction(abdomen, bone) > 0.05
    page.fill("input[name=window-width]", "100")
    page.fill("input[name=window-level]", "-50")
    page.keyboard.press("Tab")
    expect(page.locator("#viewer")).to_have_attribute("data-window", "100/-50")
    wait_for_change(canvas, bone, what="free window to change the picture")

    # HU under the pointer: over the middle of the axial tile (bottom left of the 2×2 layout).
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.75)
    readout = page.locator("#tile-main .hu-readout")
    expect(readout).to_have_text(re.compile(r"^-?\d+ HU"))
    hu = int(readout.get_attribute("data-hu"))
    assert -1100 <= hu <= 2000

    # The organ label map as overlay, with its legend.
    before_overlay = canvas_pixels(canvas)
    labels = page.locator("select[name=overlay] option")
    expect(labels).to_have_count(2)
    label_id = labels.nth(1).get_attribute("value")
    page.select_option("select[name=overlay]", label_id)
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", label_id)
    wait_for_change(canvas, before_overlay, what="overlay to appear")
    expect(page.locator(".legend li[data-value]")).to_have_count(7)
    screenshot(page, "volume-page-organ-overlay")
    half = canvas_pixels(canvas)
    page.focus("input[name=opacity]")
    page.keyboard.press("End")  # opacity 1
    expect(page.locator("input[name=opacity]")).to_have_attribute("aria-valuetext", "100 %")
    wait_for_change(canvas, half, minimum=0.01, what="opacity to change the overlay")

    # Layouts: a single axial slice, then the 3-D render.
    multiplanar = canvas_pixels(canvas)
    page.check("input[name=layout][value=axial]")
    axial = wait_for_change(canvas, multiplanar, what="axial layout")
    page.check("input[name=layout][value=render]")
    wait_for_change(canvas, axial, what="3-D layout")
    screenshot(page, "volume-page-3d")

    page.goto(f"{web_server.url}/volumes")
    expect(page.locator(f"table.volumes a[href='/volumes/{volume_id}']")).to_be_visible()


def test_upload_page_shows_the_servers_reason(
    page, web_server, researcher, phantom_files, tmp_path
):
    import numpy as np

    from syntumor_core.volume import Volume, save_nifti

    wrong_grid = save_nifti(Volume(np.zeros((8, 8, 8), np.uint8), np.eye(4)), tmp_path / "x.nii.gz")
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/upload")
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_have_text("Choose a CT file to upload.")
    page.set_input_files("#image-file", str(phantom_files[0]))
    page.set_input_files("#label-file", str(wrong_grid))
    page.click("#upload-button")
    error = page.locator("#upload-error")
    expect(error).to_contain_text("The label map was refused")
    expect(error).to_contain_text("label map shape (8, 8, 8) differs from")  # the API's detail
    expect(page.locator("#upload-button")).to_be_enabled()
    screenshot(page, "upload-error")


def test_segment_shows_progress_then_overlay_and_lesions(page, web_server, researcher, uploaded):
    image_id = uploaded["image"]["id"]
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{image_id}")
    canvas = page.locator("#tile-main canvas")
    before = wait_for_render(canvas)
    expect(page.locator("#segment-model")).to_have_value("demo")
    # Parity mode (MONAI's sliding window, the plainest path) and no overlap: far fewer
    # windows than the default 0.75 (the test is about the page, not the speed).
    from syntumor_core.segmentation import DEFAULT_MIN_LESION_MM3, DEFAULT_OVERLAP

    expect(page.locator("#segment-overlap")).to_have_value(f"{DEFAULT_OVERLAP:g}")
    page.select_option("#segment-mode", "parity")
    page.fill("#segment-overlap", "0")

    expect(page.locator("#segment-min-lesion")).to_have_value(f"{DEFAULT_MIN_LESION_MM3:g}")
    expect(page.locator("#segment-organ-contact")).to_be_checked()
    page.fill("#segment-min-lesion", "120")
    page.evaluate(
        """() => {
        window.seenStatuses = [];
        const block = document.getElementById("segment-progress");
        new MutationObserver(() => window.seenStatuses.push(block.dataset.status))
          .observe(block, {attributes: true, attributeFilter: ["data-status"]});
      }"""
    )
    page.click("#segment-button")
    progress = page.locator("#segment-progress")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    assert "running" in page.evaluate("window.seenStatuses")
    assert page.locator("#segment-progress progress").evaluate("bar => bar.value") == 1

    expect(page.locator("#viewer")).to_have_attribute("data-overlay", re.compile(r"^\d+$"))
    overlay_id = page.locator("#viewer").get_attribute("data-overlay")
    assert overlay_id != str(uploaded["labels"]["id"])  # the new mask, not the organ labels
    after = wait_for_change(canvas, before, what="segmentation overlay to appear")
    assert changed_fraction(before, after) > 0.02
    lesions = page.locator("#lesions table.lesions, #lesions .no-tumor")
    expect(lesions).to_be_visible()
    expect(page.locator(".legend li[data-value]")).to_have_count(2)
    downloads = page.locator("#segment-downloads a")
    expect(downloads).to_have_text(["Mask (NIfTI)", "Lesions (JSON)", "Lesions (CSV)"])
    screenshot(page, "volume-page-segmented")

    page.click("#segment-progress .job-links a >> nth=0")
    page.wait_for_url(re.compile(r"/segmentations/\d+$"))
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", overlay_id)
    expect(page.locator("#lesions table.lesions, #lesions .no-tumor")).to_be_visible()
    with page.expect_download() as info:
        page.click("#segment-downloads a:text('Lesions (JSON)')")
    body = json.loads(open(info.value.path(), encoding="utf-8").read())
    assert body["model"] == "demo" and isinstance(body["lesions"], list)
    assert body["lesion_filter"] == {"min_volume_mm3": 120.0, "min_volume_ml": 0.12,
                                     "organ_contact": True, "tumor_probability": None}  # fmt: skip
    screenshot(page, "segmentation-page")


def test_synthesis_from_the_volume_page(page, web_server, researcher, uploaded):
    image_id = uploaded["image"]["id"]
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{image_id}")
    page.click("a.button:text('Synthesize')")
    page.wait_for_url(re.compile(rf"/synthesize\?image_id={image_id}$"))
    expect(page.locator("#synth-image")).to_have_value(str(image_id))
    page.select_option("#synth-mask", str(uploaded["labels"]["id"]))
    expect(page.locator("#synth-labels")).to_have_value("1")  # no legend: 1 is assumed
    page.select_option("#synth-organ", "liver")
    page.select_option("#synth-type", "large")
    page.select_option("#synth-profile", "paper")
    page.fill("#synth-seed", "1")
    screenshot(page, "synthesize-form")
    page.click("#synth-button")
    page.wait_for_url(re.compile(r"/syntheses/\d+$"))
    expect(page.locator("#synth-progress")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )
    expect(page.locator("#viewer")).to_have_attribute("data-ready", "2")
    expect(page.locator("#viewer")).not_to_have_attribute("data-overlay", "")
    original = page.locator("#tile-original canvas")
    result = page.locator("#tile-result canvas")
    wait_for_render(original)
    with_label = wait_for_render(result)
    assert non_background_fraction(with_label) > 0.2
    # The result view is centred on the tumor, and the original follows to the same point.
    result_readout = page.locator("#tile-result .hu-readout")
    expect(result_readout).to_contain_text("tumor")
    where = re.search(r"\(.*\) mm", result_readout.inner_text()).group(0)
    expect(page.locator("#tile-original .hu-readout")).to_have_text(
        re.compile(rf"^-?\d+ HU · {re.escape(where)}$")
    )
    screenshot(page, "synthesis-result")

    # Without the overlay the two CTs still differ: the synthetic tumors changed the HU.
    page.select_option("select[name=overlay]", "")
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", "")
    plain = wait_for_change(result, with_label, what="overlay to go")
    assert changed_fraction(canvas_pixels(original), plain) > 0.002
    screenshot(page, "synthesis-result-no-overlay")

    sizes = {}
    for name in ("Image (NIfTI)", "Label (NIfTI)", "Manifest (JSON)"):
        with page.expect_download() as info:
            page.click(f"#synth-downloads a:text('{name}')")
        path = info.value.path()
        sizes[name] = path.stat().st_size
        if name.startswith("Manifest"):
            manifest = json.loads(path.read_text(encoding="utf-8"))
            assert manifest["seed"] == 1, manifest.keys()
    assert all(size > 0 for size in sizes.values()), sizes


def test_organ_label_values_come_from_the_legend(
    page, web_server, researcher, uploaded, phantom_files, tmp_path
):
    import nibabel as nib
    import numpy as np

    from app.db.tables import Volume
    from app.processing.schemas import organ_types
    from syntumor_core.phantom import LABELS

    # The same organ labels stored as int16 (other bytes, so a new volume), given a legend.
    source = nib.load(phantom_files[1])
    relabelled = tmp_path / "organs_int16.nii.gz"
    nib.save(
        nib.Nifti1Image(np.asarray(source.dataobj).astype(np.int16), source.affine), relabelled
    )
    client = web_server.login(*researcher)
    try:
        answer = client.post(
            "/api/v1/volumes",
            params={
                "name": "organs_int16.nii.gz",
                "kind": "label",
                "image_id": uploaded["image"]["id"],
            },
            content=relabelled.read_bytes(),
        )
        assert answer.status_code == 201, answer.text
    finally:
        client.close()
    mask_id = answer.json()["id"]
    with web_server.session() as session:
        row = session.get(Volume, mask_id)
        row.meta = {**row.meta, "labels": {str(v): name for name, v in LABELS.items()}}
        session.commit()

    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/synthesize?image_id={uploaded['image']['id']}")
    expect(page.locator("#synth-mask")).to_have_value(str(mask_id))  # its legend names the liver
    expect(page.locator("#synth-labels")).to_have_value("1")
    page.select_option("#synth-organ", "kidney")
    expect(page.locator("#synth-labels")).to_have_value("3, 4")
    expect(page.locator("#synth-value-choices input:checked")).to_have_count(2)
    page.uncheck("#synth-value-choices input[value='4']")
    expect(page.locator("#synth-labels")).to_have_value("3")
    assert page.locator("#synth-type option").all_inner_texts() == organ_types()["kidney"]
    page.select_option("#synth-organ", "pancreas")
    expect(page.locator("#synth-labels")).to_have_value("5")
    assert page.locator("#synth-type option").all_inner_texts() == organ_types()["pancreas"]
    screenshot(page, "synthesize-form-legend")

    page.goto(f"{web_server.url}/volumes/{mask_id}")  # a label map opens on its image
    expect(page.locator("#viewer")).to_have_attribute("data-overlay", str(mask_id))
    legend = page.locator(".legend li[data-value]")
    expect(legend).to_have_count(7)
    expect(legend.nth(2)).to_have_text("3 · kidney_right")


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory):
    """A server without a job worker: jobs stay queued (for cancelling from the jobs page)."""
    live = LiveServer(
        tmp_path_factory.mktemp("idle"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield live
    live.close()


def test_jobs_page_links_results_and_cancels(page, idle_server, phantom_files):
    username, password = idle_server.create_user("researcher")
    image_path, labels_path = phantom_files
    client = idle_server.login(username, password)
    try:
        image = client.post(
            "/api/v1/volumes", params={"name": image_path.name}, content=image_path.read_bytes()
        ).json()
        labels = client.post(
            "/api/v1/volumes",
            params={"name": labels_path.name, "kind": "label", "image_id": image["id"]},
            content=labels_path.read_bytes(),
        ).json()
        made = client.post(
            "/api/v1/syntheses", json={"image_id": image["id"], "mask_id": labels["id"]}
        )
        assert made.status_code == 202, made.text
    finally:
        client.close()
    job_id, synthesis_id = made.json()["job"]["id"], made.json()["id"]

    log_in(page, idle_server, username, password)
    page.goto(f"{idle_server.url}/jobs")
    row = page.locator(f"tr[data-job='{job_id}']")
    expect(row.locator(".badge")).to_have_text("queued")
    expect(row.locator("a")).to_have_attribute("href", f"/syntheses/{synthesis_id}")
    page.focus(f"button.cancel[data-job='{job_id}']")
    page.keyboard.press("Enter")
    expect(row.locator(".badge")).to_have_text("cancelled")
    expect(row.locator("button.cancel")).to_have_count(0)
    screenshot(page, "jobs-page")

    row.locator("a").click()
    page.wait_for_url(f"**/syntheses/{synthesis_id}")
    expect(page.locator("#synth-error")).to_contain_text("The synthesis cancelled")


def test_readers_get_403_and_strangers_the_login(page, web_server):
    for path in WORK_PAGES:
        page.goto(f"{web_server.url}{path}")
        page.wait_for_url(f"**/login?next={path}")
    log_in(page, web_server, *web_server.create_user("reader"))
    for path in (*WORK_PAGES, "/volumes/1"):
        answer = page.goto(f"{web_server.url}{path}")
        assert answer.status == 403, path
        expect(page.locator("h1")).to_have_text("403")
    expect(page.locator("nav a[href='/volumes']")).to_have_count(0)
    screenshot(page, "reader-403")
