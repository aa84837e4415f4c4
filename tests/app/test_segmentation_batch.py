"""``POST /api/v1/segmentations/batch``: several images, the same options, all or nothing.

A server without a worker keeps the jobs queued, so what the batch queued stays to be seen
(their places in the queue included). The segmentations themselves run as single ones do
(tests/app/test_api_processing.py; the browser walk runs a batch to the end).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.db.tables import Job, Segmentation
from tests.app.api_support import assert_error, ct_array, nifti_bytes
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    """A server whose jobs stay queued: no embedded worker."""
    live = LiveServer(
        tmp_path_factory.mktemp("batch"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield live
    live.close()


@pytest.fixture(scope="module")
def researcher(queue_server):
    return queue_server.token_client("researcher")


@pytest.fixture(scope="module")
def images(researcher) -> list[int]:
    ids = []
    for seed in range(3):
        answer = researcher.post("/api/v1/volumes", params={"name": f"ct{seed}.nii.gz"},
                                 content=nifti_bytes(ct_array(seed)))  # fmt: skip
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def _counts(server) -> tuple[int, int]:
    with server.session() as session:
        return (session.scalar(select(func.count()).select_from(Segmentation)),
                session.scalar(select(func.count()).select_from(Job)))  # fmt: skip


def test_a_batch_queues_one_segmentation_per_image_with_the_same_options(
    queue_server, researcher, images
):
    body = {"image_ids": images[:2], "mode": "parity", "overlap": 0.5,
            "lesion_filter": {"min_volume_mm3": 200.0}}  # fmt: skip
    answer = researcher.post("/api/v1/segmentations/batch", json=body)
    assert answer.status_code == 202, answer.text
    batch = answer.json()
    assert batch["total"] == 2 and [s["image_id"] for s in batch["items"]] == images[:2]
    for item in batch["items"]:
        assert (item["model"], item["mode"], item["overlap"]) == ("demo", "parity", 0.5)
        assert item["lesion_filter"]["min_volume_mm3"] == 200.0
        assert item["lesion_filter"]["organ_contact"] is True
        assert item["job"]["status"] == "queued" and item["job"]["kind"] == "segment"
    positions = [item["job"]["queue_position"] for item in batch["items"]]
    assert positions == [positions[0], positions[0] + 1]
    # each is an ordinary segmentation: listed per image, with its job's parameters
    listed = researcher.get("/api/v1/segmentations", params={"image_id": images[1]}).json()
    assert [s["id"] for s in listed["items"]] == [batch["items"][1]["id"]]
    with queue_server.session() as session:
        job = session.get(Job, batch["items"][0]["job"]["id"])
        assert job.params == {"segmentation_id": batch["items"][0]["id"],
                              "lesion_filter": item["lesion_filter"]}  # fmt: skip
        assert job.owner_id is not None and job.message == "queued"


def test_the_defaults_are_those_of_a_single_request(researcher, images):
    single = researcher.post("/api/v1/segmentations", json={"image_id": images[2]}).json()
    batch = researcher.post("/api/v1/segmentations/batch", json={"image_ids": [images[2]]}).json()
    keys = ("model", "mode", "overlap", "lesion_filter")
    assert {k: batch["items"][0][k] for k in keys} == {k: single[k] for k in keys}


def test_one_bad_image_refuses_the_whole_batch_naming_it(queue_server, researcher, images):
    post = researcher.post
    before = _counts(queue_server)
    missing = post("/api/v1/segmentations/batch", json={"image_ids": [images[0], 999999]})
    assert_error(missing, 404, "volume 999999 not found (image_ids[1]); nothing was queued")
    label = post("/api/v1/volumes", params={"name": "l.nii.gz", "kind": "label",
                                           "image_id": images[0]},
                 content=nifti_bytes(ct_array(0).round().clip(0, 2).astype("uint8")))  # fmt: skip
    assert label.status_code == 201, label.text
    label_id = label.json()["id"]
    wrong = post("/api/v1/segmentations/batch", json={"image_ids": [images[1], label_id]})
    assert_error(wrong, 422, f"volume {label_id} is a label map, not an image (image_ids[1]); "
                 "nothing was queued")  # fmt: skip
    twice = post("/api/v1/segmentations/batch", json={"image_ids": [images[0], images[0]]})
    assert_error(twice, 422, f"image {images[0]} is listed more than once in image_ids; "
                 "nothing was queued")  # fmt: skip
    model = post("/api/v1/segmentations/batch", json={"image_ids": images, "model": "nope"})
    assert_error(model, 422, contains="nope")
    assert_error(post("/api/v1/segmentations/batch", json={"image_ids": []}), 422)
    assert_error(post("/api/v1/segmentations/batch", json={"image_ids": [images[0]],
                                                           "overlap": 1.5}), 422)  # fmt: skip
    assert _counts(queue_server) == before


def test_the_batch_checks_roles_and_owners(queue_server, images):
    other = queue_server.token_client("researcher")
    theirs = other.post("/api/v1/segmentations/batch", json={"image_ids": [images[0]]})
    assert_error(theirs, 404, f"volume {images[0]} not found (image_ids[0]); nothing was queued")
    reader = queue_server.token_client("reader")
    assert_error(reader.post("/api/v1/segmentations/batch", json={"image_ids": [images[0]]}), 403)
    assert_error(queue_server.client().post("/api/v1/segmentations/batch",
                                            json={"image_ids": [images[0]]}), 401)  # fmt: skip
