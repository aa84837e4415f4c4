"""Label-map legends from the upload form, and the synthesis form choosing organ values by them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

T = 60_000


@pytest.fixture(scope="module")
def researcher(web_server) -> tuple[str, str]:
    return web_server.create_user("researcher")


def _upload(page, web_server, phantom_files, legend_text: str | None, preset: str | None = None):
    image_path, labels_path = phantom_files
    page.goto(f"{web_server.url}/upload")
    page.set_input_files("#image-file", str(image_path))
    page.set_input_files("#label-file", str(labels_path))
    if preset:
        page.select_option("#legend-preset", preset)
    if legend_text is not None:
        page.fill("#legend-text", legend_text)
    page.click("#upload-button")


@pytest.mark.slow
def test_upload_with_a_legend_preset_then_synthesis_picks_organ_values(
    page, web_server, researcher, phantom_files
):
    from syntumor_core.phantom import LABELS

    log_in(page, web_server, *researcher)
    _upload(page, web_server, phantom_files, "1 = liver\n2 spleen")  # a bad line first
    expect(page.locator("#upload-error")).to_contain_text('legend line 2 ("2 spleen")')
    _upload(page, web_server, phantom_files, None, preset="phantom")
    page.wait_for_url(re.compile(r"/volumes/\d+$"), timeout=T)
    image_id = int(page.url.rsplit("/", 1)[1])
    client = web_server.login(*researcher)
    try:
        maps = client.get(f"/api/v1/volumes/{image_id}").json()["label_maps"]
    finally:
        client.close()
    assert len(maps) == 1  # the refused first try stored no label map
    assert maps[0]["labels"] == {str(value): name for name, value in LABELS.items()}

    page.goto(f"{web_server.url}/synthesize?image_id={image_id}")
    expect(page.locator("#synth-labels")).to_have_value("1")
    expect(page.locator("#mask-help")).to_have_text("The liver is label 1 in this mask's legend.")
    page.select_option("#synth-organ", "kidney")
    expect(page.locator("#synth-labels")).to_have_value("3, 4")
    expect(page.locator("#mask-help")).to_have_text(
        "The kidney is label 3 and 4 in this mask's legend."
    )
    screenshot(page, "synthesize-form-uploaded-legend")


@pytest.mark.slow
def test_a_mask_without_the_organ_in_its_legend_is_not_silently_label_1(
    page, web_server, researcher, phantom_files, tmp_path
):
    import nibabel as nib
    import numpy as np

    copies = []  # the phantom again, in other bytes: a new image and a new label map
    for path, dtype in zip(phantom_files, (np.float32, np.int16), strict=True):
        source = nib.load(path)
        copies.append(tmp_path / f"copy_{path.name}")
        nib.save(
            nib.Nifti1Image(np.asarray(source.dataobj).astype(dtype), source.affine), copies[-1]
        )
    log_in(page, web_server, *researcher)
    _upload(page, web_server, copies, None, preset="liver-tumor")
    page.wait_for_url(re.compile(r"/volumes/\d+$"), timeout=T)
    image_id = int(page.url.rsplit("/", 1)[1])
    page.goto(f"{web_server.url}/synthesize?image_id={image_id}")
    expect(page.locator("#synth-labels")).to_have_value("1")
    page.select_option("#synth-organ", "kidney")
    expect(page.locator("#synth-labels")).to_have_value("")
    expect(page.locator("#mask-help")).to_contain_text("names no kidney")
    page.click("#synth-button")
    expect(page.locator("#synth-error")).to_contain_text("Give the organ's label values")
