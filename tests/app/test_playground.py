"""The synthesis playground's API: a preview of tumors at given voxels (a crop, nothing stored),
then the full synthesis with the same centres as a job."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.volume import load_label_nifti, load_nifti


@pytest.fixture(scope="module")
def scan(server, small_phantom_files):
    client = server.token_client("researcher")
    image_path, labels_path = small_phantom_files
    image = client.post("/api/v1/volumes", params={"name": image_path.name},
                        content=image_path.read_bytes()).json()  # fmt: skip
    labels = client.post("/api/v1/volumes", params={"name": labels_path.name, "kind": "label",
                         "image_id": image["id"]}, content=labels_path.read_bytes()).json()  # fmt: skip
    liver = load_label_nifti(labels_path).array == 1
    spacing = load_nifti(image_path).spacing
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    centre = [int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape)]
    return client, image, labels, centre, load_nifti(image_path), liver


def _body(image, labels, centers, **extra):
    return {"image_id": image["id"], "mask_id": labels["id"], "mask_labels": [1],
            "tumor_type": "small", "seed": 3, "centers": centers, "radius_mm": 6,
            "drop_hu": 60, **extra}  # fmt: skip


def test_preview_is_a_crop_with_a_tumor_at_the_point(server, scan):
    client, image, labels, centre, ct, _ = scan
    answer = client.post("/api/v1/syntheses/preview", json=_body(image, labels, [centre]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    crop = nib.Nifti1Image.from_bytes(answer.content)
    data = np.asarray(crop.dataobj)
    assert all(c < n for c, n in zip(data.shape, ct.shape, strict=True))  # a crop, not the scan
    # The crop's affine puts it on the image's grid: its voxel 0 is the image's voxel `start`.
    start = np.rint(np.linalg.solve(ct.affine, crop.affine)[:3, 3]).astype(int)
    box = tuple(slice(s, s + n) for s, n in zip(start, data.shape, strict=True))
    original = np.rint(ct.array[box])
    darker = (original - data) > 20
    assert darker.any()
    mass = np.array(ndimage.center_of_mass(darker)) + start
    assert np.linalg.norm((mass - centre) * ct.spacing) <= max(5.0, np.linalg.norm(ct.spacing))
    outside = (original - data)[~darker]
    assert np.abs(outside).max() <= 20


def test_preview_refuses_bad_points_with_the_engines_message(scan):
    client, image, labels, centre, ct, liver = scan
    outside = [int(v) for v in np.argwhere(~liver)[0]]
    for centers, status, message in [
        ([outside], 422, "is not inside the liver mask"),
        ([[10**5 - 1, 0, 0]], 422, "is no voxel of the image"),
        (None, 422, "a preview needs `centers`"),
    ]:
        answer = client.post("/api/v1/syntheses/preview", json=_body(image, labels, centers))
        assert answer.status_code == status, answer.text
        assert message in answer.json()["detail"]


def test_apply_synthesizes_the_whole_scan_with_tumors_at_the_points(server, scan):
    client, image, labels, centre, ct, _ = scan
    made = client.post("/api/v1/syntheses", json=_body(image, labels, [centre]))
    assert made.status_code == 202, made.text
    assert made.json()["centers"] == [centre]
    job = server.wait_for_job(client, made.json()["job"]["id"])
    assert job["status"] == "succeeded", job
    done = client.get(f"/api/v1/syntheses/{made.json()['id']}").json()
    label = client.get(done["downloads"]["label"]).content
    array = np.asarray(nib.Nifti1Image.from_bytes(_gunzip(label)).dataobj)
    tumor = array == 2
    mass = np.array(ndimage.center_of_mass(tumor))
    assert np.linalg.norm((mass - centre) * ct.spacing) <= max(5.0, np.linalg.norm(ct.spacing))


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
