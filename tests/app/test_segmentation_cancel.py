"""Cancelling a running segmentation: it stops within seconds and leaves nothing behind.

The image (160×160×64 at 3 mm) is about 13 million voxels on the demo model's 1.5 mm grid,
hundreds of windows: a minute or more of sliding windows on a CPU, so the job is surely still in its window loop when it is
cancelled. The loop reports progress after every forward pass; the job's progress callback
notices the cancel there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.app.api_support import ct_array, nifti_bytes, stored_files, volume_count, wait_until

STOP_WITHIN_S = 5.0


def test_a_running_segmentation_is_cancelled_within_seconds_and_leaves_nothing(server):
    client = server.token_client("researcher")
    image = client.post("/api/v1/volumes", params={"name": "big.nii.gz"},
                        content=nifti_bytes(ct_array(7, (160, 160, 64)), spacing=(3.0, 3.0, 3.0)))  # fmt: skip
    assert image.status_code == 201, image.text
    volumes_before, files_before = volume_count(server), set(stored_files(server))
    created = client.post("/api/v1/segmentations", json={"image_id": image.json()["id"]}).json()
    job_url = f"/api/v1/jobs/{created['job']['id']}"
    wait_until(lambda: client.get(job_url).json()["progress"] > 0.06, 600,
               what="the segmentation in its sliding-window loop")  # fmt: skip
    asked = datetime.now(UTC)
    answer = client.post(f"{job_url}/cancel")
    assert answer.status_code == 200 and answer.json()["cancel_requested"] is True
    wait_until(lambda: client.get(job_url).json()["status"] == "cancelled", 60, interval=0.05,
               what="the job cancelled")  # fmt: skip
    job = client.get(job_url).json()
    finished = datetime.fromisoformat(job["finished_at"])
    finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
    assert (finished - asked).total_seconds() < STOP_WITHIN_S, (finished, asked)
    assert job["error"] == "cancelled by request" and job["result"] is None
    segmentation = client.get(f"/api/v1/segmentations/{created['id']}").json()
    assert segmentation["label_id"] is None and segmentation["lesions"] is None
    assert segmentation["downloads"]["lesions_json"] is None
    assert volume_count(server) == volumes_before  # no label map stored
    assert set(stored_files(server)) == files_before  # no partial result files
    assert not (server.data_dir / "results" / str(created["job"]["id"])).exists()
