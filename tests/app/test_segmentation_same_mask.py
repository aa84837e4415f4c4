"""The CLI and the API give the same mask and the same lesion list for the same options.

One small phantom (48×40×24 voxels of 4 mm) is segmented with the demo model twice: by
``syntumor segment`` and by a segmentation job of the live server, both in fast mode at
overlap 0.5 with the same non-default lesion filter. The helpers here serve the browser test
too (tests/browser/test_segmentation_same_mask.py), which adds the page's Segment button and
compares the three with every option left at its default.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
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
needs_demo = pytest.mark.skipif(not DEMO.is_file(), reason="the demo model's file is not here")


def phantom_ct(folder: Path) -> Path:
    """The phantom CT as a NIfTI file in ``folder``."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    phantom = make_phantom(seed=11, shape=(48, 40, 24), spacing=(4.0, 4.0, 4.0))
    return save_nifti(phantom.image, folder / "ct.nii.gz")


def cli_labels(image_path: Path, out: Path, *options: str) -> tuple[np.ndarray, dict]:
    """``syntumor segment --image … --model demo --out-label out`` with ``options``: the labels
    and the sidecar."""
    from syntumor_core.volume import load_label_nifti

    arguments = ["segment", "--image", str(image_path), "--model", "demo",
                 "--out-label", str(out), *options]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name(out.name.removesuffix(".nii.gz") + ".json").read_text())
    return load_label_nifti(out).array, sidecar


def upload(client: httpx.Client, image_path: Path) -> int:
    image = client.post("/api/v1/volumes", params={"name": image_path.name},
                        content=image_path.read_bytes())  # fmt: skip
    assert image.status_code == 201, image.text
    return image.json()["id"]


def finished_labels(client: httpx.Client, segmentation_id: int) -> tuple[np.ndarray, dict]:
    """Wait for a segmentation's job; its label map and the segmentation's JSON."""
    created = client.get(f"/api/v1/segmentations/{segmentation_id}").json()
    events = read_events(client, f"/api/v1/jobs/{created['job']['id']}/events")
    assert events[-1][1]["status"] == "succeeded", events[-1]
    done = client.get(f"/api/v1/segmentations/{segmentation_id}").json()
    answer = client.get(done["downloads"]["label"])
    labels = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(answer.content)).dataobj)
    return labels, done


def assert_same_mask(reference: np.ndarray, other: np.ndarray) -> None:
    assert other.shape == reference.shape
    assert (reference == 1).sum() > 1000  # a liver was found: the comparison means something
    assert np.mean(other == reference) >= 0.9999


@needs_demo
def test_cli_and_api_give_the_same_mask_for_the_same_options(server, tmp_path):
    image_path = phantom_ct(tmp_path)
    cli, sidecar = cli_labels(image_path, tmp_path / "seg.nii.gz", "--overlap", "0.5",
                              "--min-lesion-mm3", "200", "--organ-contact",
                              "--data-dir", str(tmp_path / "var"))  # fmt: skip

    client = server.token_client("researcher")
    body = {"image_id": upload(client, image_path), "model": "demo", "mode": "fast",
            "overlap": 0.5, "lesion_filter": FILTER}  # fmt: skip
    created = client.post("/api/v1/segmentations", json=body).json()
    api, done = finished_labels(client, created["id"])
    table = client.get(done["downloads"]["lesions_json"]).json()

    assert_same_mask(cli, api)
    assert table["lesion_filter"] == sidecar["lesion_filter"]
    assert table["lesion_filter_removed"] == sidecar["lesion_filter_removed"]
    assert len(table["lesions"]) == len(done["lesions"])
    removed = table["lesion_filter_removed"]
    assert removed["removed_small"] > 0 and removed["removed_outside_organ"] > 0  # it worked
