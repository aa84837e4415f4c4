"""Segmentations, syntheses, models and synthesis options against a real server.

One small synthetic CT goes in as a zipped DICOM series; it is segmented with the demo model
(progress followed over server-sent events) and a tumor is synthesized into it. The outputs
(label map, lesion tables, DICOM-SEG, manifest) are downloaded and read back.
"""

from __future__ import annotations

import csv
import gzip
import io

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.app.api_support import assert_error, ct_array, nifti_bytes, read_events
from tests.app.dicom_series import write_series_zip

DICOM_SHAPE = (48, 40, 16)  # columns, rows, slices
DICOM_SPACING = (4.0, 4.0, 6.0)


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    """(DICOM zip, organ-label NIfTI bytes, phantom) of a small abdominal phantom."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    folder = tmp_path_factory.mktemp("dicom-phantom")
    phantom = make_phantom(seed=5, shape=DICOM_SHAPE, spacing=DICOM_SPACING)
    series_zip = write_series_zip(phantom.image, folder / "series.zip")
    labels = save_nifti(phantom.labels, folder / "organs.nii.gz")
    return series_zip, labels.read_bytes(), phantom


@pytest.fixture(scope="module")
def researcher(server):
    return server.token_client("researcher")


@pytest.fixture(scope="module")
def dicom_image(server, researcher, phantom_case):
    series_zip = phantom_case[0]
    answer = researcher.post(
        "/api/v1/volumes", params={"name": "abdomen.zip"}, content=series_zip.read_bytes()
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


LESION_FILTER = {"min_volume_mm3": 50.0, "organ_contact": True, "tumor_probability": 0.6}


@pytest.fixture(scope="module")
def segmentation(server, researcher, dicom_image):
    """A finished segmentation of the DICOM image, and the events its job sent."""
    body = {"image_id": dicom_image["id"], "model": "demo", "lesion_filter": LESION_FILTER}
    answer = researcher.post("/api/v1/segmentations", json=body)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    events = read_events(researcher, f"/api/v1/jobs/{created['job']['id']}/events")
    return created, events


def test_dicom_upload_is_a_volume_on_the_series_grid(dicom_image, phantom_case):
    assert dicom_image["format"] == "dicom"
    assert dicom_image["shape"] == list(DICOM_SHAPE)
    assert dicom_image["spacing_mm"] == list(DICOM_SPACING)


def test_segmentation_job_streams_progress_then_end(segmentation):
    created, events = segmentation
    assert created["job"]["status"] == "queued" and created["label_id"] is None
    assert created["downloads"]["lesions_json"] is None
    names = [name for name, _ in events]
    assert names[-1] == "end" and set(names[:-1]) == {"progress"}
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert len(progress) >= 3, events
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0.0 < p < 1.0 for p in progress)
    assert events[-1][1]["status"] == "succeeded", events[-1]


def test_segmentation_get_list_and_outputs(server, researcher, segmentation, dicom_image):
    created, _ = segmentation
    got = researcher.get(f"/api/v1/segmentations/{created['id']}")
    assert got.status_code == 200
    result = got.json()
    assert result["job"]["status"] == "succeeded" and result["label_id"] is not None
    assert result["model"] == "demo" and result["mode"] == "fast"
    listed = researcher.get("/api/v1/segmentations", params={"image_id": dicom_image["id"]})
    assert [s["id"] for s in listed.json()["items"]] == [created["id"]]
    assert researcher.get("/api/v1/segmentations", params={"image_id": 999999}).json()["total"] == 0

    label = researcher.get(result["downloads"]["label"])
    assert label.status_code == 200
    labels = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(label.content)).dataobj)
    assert labels.shape == DICOM_SHAPE and (labels == 1).sum() > 500
    assert set(np.unique(labels)) <= {0, 1, 2}

    lesions = researcher.get(result["downloads"]["lesions_json"])
    assert lesions.status_code == 200
    table = lesions.json()
    assert table["model"] == "demo" and table["lesions"] == result["lesions"]
    assert result["lesion_filter"] == LESION_FILTER
    assert table["lesion_filter"] == {**LESION_FILTER, "min_volume_ml": 0.05}
    assert set(table["lesion_filter_removed"]) == {
        "lesions_in", "removed_small", "removed_outside_organ"
    }  # fmt: skip
    rows = list(
        csv.DictReader(io.StringIO(researcher.get(result["downloads"]["lesions_csv"]).text))
    )
    assert len(rows) == len(table["lesions"])
    assert_error(
        researcher.get(f"/api/v1/segmentations/{created['id']}/lesions.xml"),
        404,
        "lesion tables come as lesions.json or lesions.csv",
    )


def test_dicom_seg_references_the_series_and_matches_the_label_map(
    researcher, segmentation, phantom_case
):
    created, _ = segmentation
    result = researcher.get(f"/api/v1/segmentations/{created['id']}").json()
    assert result["downloads"]["dicom_seg"] == f"/api/v1/segmentations/{created['id']}/dicom-seg"
    answer = researcher.get(result["downloads"]["dicom_seg"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/dicom"
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(answer.content)))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver", "Liver tumor"]

    label = researcher.get(result["downloads"]["label"])
    labels = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(label.content)).dataobj)
    per_slice = [(labels[:, :, k] == v).any() for v in (1, 2) for k in range(DICOM_SHAPE[2])]
    assert seg.NumberOfFrames == sum(per_slice)  # one frame per non-empty (segment, slice)

    sources = _source_datasets(phantom_case[0])
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert len(referenced.ReferencedInstanceSequence) == DICOM_SHAPE[2]
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID

    # Frame by frame, the SEG is the label map on the series' grid.
    for dataset in sources:
        k = round(float(dataset.ImagePositionPatient[2]) / DICOM_SPACING[2] - _z0(sources))
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[dataset.SOPInstanceUID],
            combine_segments=True,
            skip_overlap_checks=True,
        )[0]
        assert np.array_equal(pixels, labels[:, :, k].T), f"slice {k}"


def _source_datasets(series_zip) -> list[pydicom.Dataset]:
    import zipfile

    with zipfile.ZipFile(series_zip) as archive:
        return [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in archive.namelist()]


def _z0(sources) -> float:
    return min(float(d.ImagePositionPatient[2]) for d in sources) / DICOM_SPACING[2]


def test_synthesis_create_list_get_manifest(server, researcher, dicom_image, phantom_case):
    labels = researcher.post(
        "/api/v1/volumes",
        params={"name": "organs.nii.gz", "kind": "label", "image_id": dicom_image["id"]},
        content=phantom_case[1],
    )
    assert labels.status_code == 201, labels.text
    body = {
        "image_id": dicom_image["id"],
        "mask_id": labels.json()["id"],
        "tumor_type": "medium",
        "seed": 7,
    }
    answer = researcher.post("/api/v1/syntheses", json=body)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["organ"] == "liver" and created["profile"] == "paper"
    assert created["downloads"]["manifest"] is None
    job = server.wait_for_job(researcher, created["job"]["id"])
    assert job["status"] == "succeeded", job

    result = researcher.get(f"/api/v1/syntheses/{created['id']}").json()
    assert result["out_image_id"] and result["out_label_id"]
    assert result["job"]["result"]["tumor_voxels"] > 0
    manifest = researcher.get(result["downloads"]["manifest"])
    assert manifest.status_code == 200 and manifest.json()["seed"] == 7
    out_label = researcher.get(result["downloads"]["label"])
    array = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(out_label.content)).dataobj)
    assert array.shape == DICOM_SHAPE and (array == 2).sum() == job["result"]["tumor_voxels"]
    listed = researcher.get("/api/v1/syntheses").json()
    assert created["id"] in [s["id"] for s in listed["items"]]
    assert_error(researcher.get("/api/v1/syntheses/999999"), 404, "synthesis 999999 not found")


def test_synthesis_with_protected_labels(server, researcher, dicom_image, phantom_case):
    """protect_labels reach the engine: the manifest records a protect mask; a label cannot
    be organ and protected at once."""
    labels = researcher.post(
        "/api/v1/volumes",
        params={"name": "organs.nii.gz", "kind": "label", "image_id": dicom_image["id"]},
        content=phantom_case[1],
    )
    assert labels.status_code in (200, 201), labels.text  # 200: already uploaded
    body = {"image_id": dicom_image["id"], "mask_id": labels.json()["id"], "seed": 3}
    both = researcher.post("/api/v1/syntheses", json={**body, "protect_labels": [1]})
    assert_error(both, 422, contains="both organ")
    answer = researcher.post(
        "/api/v1/syntheses", json={**body, "tumor_type": "small", "protect_labels": [2, 5]}
    )
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["protect_labels"] == [2, 5]
    job = server.wait_for_job(researcher, created["job"]["id"])
    assert job["status"] == "succeeded", job
    result = researcher.get(f"/api/v1/syntheses/{created['id']}").json()
    manifest = researcher.get(result["downloads"]["manifest"]).json()
    assert manifest["input"]["protect_mask_sha256"]


def test_models_and_synthesis_options(researcher):
    models = researcher.get("/api/v1/models")
    assert models.status_code == 200
    demo = next(m for m in models.json()["items"] if m["name"] == "demo")
    assert demo["status"] == "local" and demo["arch"] == "unet"
    options = researcher.get("/api/v1/synthesis-options").json()
    assert set(options["organs"]) == {"liver", "pancreas", "kidney"}
    assert "medium" in options["organs"]["liver"] and options["profiles"] == ["paper", "realistic"]


def test_bad_processing_requests(server, researcher, dicom_image, phantom_case):
    image_id = dicom_image["id"]
    post = researcher.post
    unknown = post("/api/v1/segmentations", json={"image_id": image_id, "model": "no-such-model"})
    assert_error(unknown, 422, contains="no-such-model")
    assert_error(
        post("/api/v1/segmentations", json={"image_id": 999999}), 404, "volume 999999 not found"
    )
    overlap = post("/api/v1/segmentations", json={"image_id": image_id, "overlap": 1.5})
    assert_error(overlap, 422, contains="overlap")
    mode = post("/api/v1/segmentations", json={"image_id": image_id, "mode": "turbo"})
    assert_error(mode, 422, contains="mode")
    for bad in ({"tumor_probability": 1.5}, {"min_volume_mm3": -1}, {"colour": "red"}):
        cleaning = post("/api/v1/segmentations", json={"image_id": image_id, "lesion_filter": bad})
        assert cleaning.status_code == 422, (bad, cleaning.text)

    label_id = post(
        "/api/v1/volumes",
        params={"name": "o.nii.gz", "kind": "label", "image_id": image_id},
        content=phantom_case[1],
    ).json()["id"]
    assert_error(post("/api/v1/segmentations", json={"image_id": label_id}), 422,
                 f"volume {label_id} is a label map, not an image")  # fmt: skip
    swapped = post("/api/v1/syntheses", json={"image_id": label_id, "mask_id": image_id})
    assert_error(swapped, 422, f"volume {label_id} is a label map, not an image")
    same = post("/api/v1/syntheses", json={"image_id": image_id, "mask_id": image_id})
    assert_error(same, 422, f"volume {image_id} is an image, not a label map")
    organ = post(
        "/api/v1/syntheses", json={"image_id": image_id, "mask_id": label_id, "organ": "brain"}
    )
    assert_error(organ, 422, contains="organ must be one of")
    kind = post("/api/v1/syntheses",
                json={"image_id": image_id, "mask_id": label_id, "organ": "pancreas", "tumor_type": "large"})  # fmt: skip
    assert_error(kind, 422, contains="tumor type 'large' is not one of pancreas's")
    profile = post(
        "/api/v1/syntheses", json={"image_id": image_id, "mask_id": label_id, "profile": "x"}
    )
    assert_error(profile, 422, contains="profile must be one of")

    other_image = post("/api/v1/volumes", params={"name": "other.nii.gz"},
                       content=nifti_bytes(ct_array(99))).json()  # fmt: skip
    mismatch = post("/api/v1/syntheses", json={"image_id": other_image["id"], "mask_id": label_id})
    assert_error(mismatch, 422, contains=[f"mask {label_id} has shape", "[48, 40, 16]"])
    nifti_seg = researcher.get("/api/v1/segmentations/999999/dicom-seg")
    assert_error(nifti_seg, 404, "segmentation 999999 not found")


def test_processing_routes_check_roles_owners_and_csrf(
    server, researcher, segmentation, dicom_image
):
    created, _ = segmentation
    reader = server.token_client("reader")
    for path in ("/api/v1/segmentations", "/api/v1/syntheses", "/api/v1/models",
                 "/api/v1/synthesis-options"):  # fmt: skip
        assert_error(reader.get(path), 403, "this needs the role admin or researcher")
        assert_error(server.client().get(path), 401)
    body = {"image_id": dicom_image["id"]}
    assert_error(reader.post("/api/v1/segmentations", json=body), 403)

    other = server.token_client("researcher")
    seg_id = created["id"]
    assert_error(
        other.get(f"/api/v1/segmentations/{seg_id}"), 404, f"segmentation {seg_id} not found"
    )
    assert_error(other.get(f"/api/v1/segmentations/{seg_id}/lesions.json"), 404)
    assert_error(other.get(f"/api/v1/segmentations/{seg_id}/dicom-seg"), 404)
    assert seg_id not in [s["id"] for s in other.get("/api/v1/segmentations").json()["items"]]
    admin = server.token_client("admin")
    assert admin.get(f"/api/v1/segmentations/{seg_id}").status_code == 200

    browser = server.login(*server.create_user("researcher"))
    no_csrf = server.client(cookies=browser.cookies)
    assert_error(no_csrf.post("/api/v1/segmentations", json=body), 403,
                 contains="CSRF token missing or wrong")  # fmt: skip
