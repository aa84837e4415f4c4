"""The CLI, the API and the page give the same mask when every option is left at its default.

The phantom of tests/app/test_segmentation_same_mask.py is segmented three ways: (a) by
``syntumor segment`` with no option but ``--model demo``, (b) by the API with only
``image_id``, (c) by the volume page's Segment button with the form untouched. The three label
maps agree (at least 99.99 % of voxels) and hold a liver. The page's form shows the core's
defaults; this is the check that the three paths mean the same thing by "default".
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.app.test_segmentation_same_mask import (
    assert_same_mask,
    cli_labels,
    finished_labels,
    needs_demo,
    phantom_ct,
    upload,
)
from tests.browser.conftest import log_in, screenshot

JOB_TIMEOUT_MS = 600_000  # a loaded 2-core machine runs the demo model slowly


@needs_demo
def test_cli_api_and_page_give_the_same_mask_with_the_defaults(page, web_server, tmp_path):
    from syntumor_core.segmentation.options import (
        DEFAULT_MIN_LESION_MM3,
        DEFAULT_MODE,
        DEFAULT_OVERLAP,
    )

    image_path = phantom_ct(tmp_path)
    cli, sidecar = cli_labels(image_path, tmp_path / "cli.nii.gz")
    assert (sidecar["mode"], sidecar["overlap"]) == (DEFAULT_MODE, DEFAULT_OVERLAP)

    researcher = web_server.create_user("researcher")
    client = web_server.login(*researcher)
    image_id = upload(client, image_path)
    created = client.post("/api/v1/segmentations", json={"image_id": image_id})
    assert created.status_code == 202, created.text
    api, api_done = finished_labels(client, created.json()["id"])

    log_in(page, web_server, *researcher)
    page.goto(f"{web_server.url}/volumes/{image_id}")
    expect(page.locator("#segment-button")).to_be_enabled(timeout=30_000)
    expect(page.locator("#segment-mode")).to_have_value(DEFAULT_MODE)
    expect(page.locator("#segment-overlap")).to_have_value(f"{DEFAULT_OVERLAP:g}")
    expect(page.locator("#segment-min-lesion")).to_have_value(f"{DEFAULT_MIN_LESION_MM3:g}")
    expect(page.locator("#overlap-help")).to_contain_text(f"the authors' {DEFAULT_OVERLAP:g}")
    page.click("#segment-button")
    progress = page.locator("#segment-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    link = page.locator("#segment-progress .job-links a[href^='/segmentations/']")
    page_id = int(re.search(r"/segmentations/(\d+)$", link.get_attribute("href")).group(1))
    screenshot(page, "same-mask-page-segmented")
    by_page, page_done = finished_labels(client, page_id)

    keys = ("model", "mode", "overlap", "lesion_filter")
    assert {k: page_done[k] for k in keys} == {k: api_done[k] for k in keys}
    assert api_done["lesion_filter"] == {
        k: sidecar["lesion_filter"][k]
        for k in ("min_volume_mm3", "organ_contact", "tumor_probability")
    }
    assert_same_mask(cli, api)
    assert_same_mask(cli, by_page)
    client.close()
