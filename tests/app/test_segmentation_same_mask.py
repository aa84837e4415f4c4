"""The CLI and the API give the same mask and the same lesion list for the same options.

One small phantom (48×40×24 voxels of 4 mm) is segmented with the demo model twice: by
``syntumor segment`` and by a segmentation job of the live server, both in fast mode at
overlap 0.5 with the same non-default lesion filter. The page posts the same body as the
API call here (``static/js/volume_page.js``), so it gets the same mask.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.cli.segmentation import register
from tests.app.api_support import read_events

register(app)
DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "model.pt"
FILTER = {"min_volume_mm3": 200.0, "organ_contact": True, "tumor_probability": None}


@pytest.mark.skipif(not DEMO.is_file(), reason="the demo model's file is not here")
def test_cli_and_api_give_the_same_mask_for_the_same_options(server, tmp_path):
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import load_label_nifti, save_nifti

    phantom = make_phantom(seed=11, shape=(48, 40, 24), spacing=(4.0, 4.0, 4.0))
    image_path = save_nifti(phantom.image, tmp_path / "ct.nii.gz")
    out = tmp_path / "seg.nii.gz"
    result = CliRunner().invoke(app, [
        "segment", "--image", str(image_path), "--model", "demo", "--out-label", str(out),
        "--overlap", "0.5", "--min-lesion-mm3", "200", "--organ-contact",
        "--data-dir", str(tmp_path / "var"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    cli_labels = load_label_nifti(out).array
    sidecar = json.loads((tmp_path / "seg.json").read_text())

    client = server.token_client("researcher")
    image = client.post("/api/v1/volumes", params={"name": "ct.nii.gz"},
                        content=image_path.read_bytes())  # fmt: skip
    assert image.status_code == 201, image.text
    body = {"image_id": image.json()["id"], "model": "demo", "mode": "fast", "overlap": 0.5,
            "lesion_filter": FILTER}  # fmt: skip
    created = client.post("/api/v1/segmentations", json=body).json()
    events = read_events(client, f"/api/v1/jobs/{created['job']['id']}/events")
    assert events[-1][1]["status"] == "succeeded", events[-1]
    done = client.get(f"/api/v1/segmentations/{created['id']}").json()
    answer = client.get(done["downloads"]["label"])
    api_labels = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(answer.content)).dataobj)
    table = client.get(done["downloads"]["lesions_json"]).json()

    assert api_labels.shape == cli_labels.shape
    assert (cli_labels == 1).sum() > 1000  # a liver was found: the comparison means something
    assert np.mean(api_labels == cli_labels) >= 0.9999
    assert table["lesion_filter"] == sidecar["lesion_filter"]
    assert table["lesion_filter_removed"] == sidecar["lesion_filter_removed"]
    assert len(table["lesions"]) == len(done["lesions"])
    removed = table["lesion_filter_removed"]
    assert removed["removed_small"] > 0 and removed["removed_outside_organ"] > 0  # it worked
