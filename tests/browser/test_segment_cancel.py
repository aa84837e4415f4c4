"""The Cancel buttons of the volume page and the segmentation page stop a running segmentation.

The image (160×160×64 at 3 mm, 13 million voxels on the demo model's 1.5 mm grid) takes a
minute or more to segment on a CPU, so the job is still running when the button is pressed.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.app.api_support import ct_array, nifti_bytes
from tests.browser.conftest import log_in, screenshot


def test_the_cancel_button_stops_a_running_segmentation(page, web_server):
    researcher = web_server.create_user("researcher")
    client = web_server.login(*researcher)
    try:
        image = client.post("/api/v1/volumes", params={"name": "big.nii.gz"},
                            content=nifti_bytes(ct_array(3, (160, 160, 64)), spacing=(3.0, 3.0, 3.0)))  # fmt: skip
        assert image.status_code == 201, image.text
    finally:
        client.close()
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{image.json()['id']}")
    expect(page.locator("#segment-button")).to_be_enabled(timeout=30_000)
    page.click("#segment-button")
    progress = page.locator("#segment-progress")
    expect(progress).to_have_attribute("data-status", "running", timeout=300_000)
    cancel = page.locator("#segment-progress button.cancel-job")
    expect(cancel).to_be_visible()
    cancel.click()
    expect(progress).to_have_attribute("data-status", "cancelled", timeout=60_000)
    expect(cancel).to_have_count(0)  # the button goes once the job is finished
    expect(page.locator("#segment-error")).to_contain_text("cancelled")
    expect(page.locator("#segment-result")).to_be_hidden()
    expect(page.locator("#segment-button")).to_be_enabled()
    screenshot(page, "segmentation-cancelled")


def test_the_segmentation_page_cancels_its_running_job(page, web_server):
    researcher = web_server.create_user("researcher")
    client = web_server.login(*researcher)
    try:
        image = client.post("/api/v1/volumes", params={"name": "big.nii.gz"},
                            content=nifti_bytes(ct_array(4, (160, 160, 64)), spacing=(3.0, 3.0, 3.0)))  # fmt: skip
        assert image.status_code == 201, image.text
        created = client.post("/api/v1/segmentations", json={"image_id": image.json()["id"]})
        assert created.status_code == 202, created.text
        segmentation = created.json()
    finally:
        client.close()
    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/segmentations/{segmentation['id']}")
    progress = page.locator("#segment-progress")
    expect(progress).to_have_attribute("data-status", "running", timeout=300_000)
    cancel = page.locator("#segment-progress button.cancel-job")
    expect(cancel).to_be_visible()
    screenshot(page, "segmentation-page-running")
    cancel.click()
    expect(progress).to_have_attribute("data-status", "cancelled", timeout=60_000)
    expect(cancel).to_have_count(0)
    expect(page.locator("#segment-error")).to_contain_text("cancelled")
    expect(page.locator("#segment-result")).to_be_hidden()
    screenshot(page, "segmentation-page-cancelled")
