"""``/api/v1/jobs`` against real servers: list, get, cancel and server-sent events.

Jobs of the ``sleep`` kind (app/jobs/diagnostics.py) are put straight into the database:
cheap, and as long as a test needs. A second server without a worker keeps jobs queued.
"""

from __future__ import annotations

import pytest

from tests.app.api_support import (
    add_job,
    assert_error,
    ct_array,
    nifti_bytes,
    read_events,
    user_id,
    wait_until,
)
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    """A server whose jobs stay queued: no embedded worker and no worker process."""
    live = LiveServer(
        tmp_path_factory.mktemp("queue-only"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield live
    live.close()


def test_list_and_get_show_own_jobs_and_admins_all(queue_server):
    alice, bob = queue_server.token_client("researcher"), queue_server.token_client("researcher")
    admin = queue_server.token_client("admin")
    mine = [add_job(queue_server, owner_id=user_id(alice), params={"seconds": i}) for i in range(3)]
    theirs = add_job(queue_server, owner_id=user_id(bob), kind="segment")

    page = alice.get("/api/v1/jobs", params={"limit": 2}).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == mine[::-1][:2]
    rest = alice.get("/api/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert [j["id"] for j in rest["items"]] == [mine[0]]
    assert alice.get("/api/v1/jobs", params={"kind": "segment"}).json()["total"] == 0
    assert alice.get("/api/v1/jobs", params={"status": "queued"}).json()["total"] == 3
    everything = admin.get("/api/v1/jobs", params={"limit": 200}).json()
    assert set(mine) | {theirs} <= {j["id"] for j in everything["items"]}

    job = alice.get(f"/api/v1/jobs/{mine[0]}")
    assert job.status_code == 200
    body = job.json()
    assert body["status"] == "queued" and body["kind"] == "sleep" and body["attempts"] == 0
    assert body["log"] == "" and body["progress"] == 0.0
    assert_error(alice.get(f"/api/v1/jobs/{theirs}"), 404, f"job {theirs} not found")
    assert_error(alice.get("/api/v1/jobs/999999"), 404, "job 999999 not found")
    assert admin.get(f"/api/v1/jobs/{theirs}").status_code == 200


def test_cancel_a_queued_job(queue_server):
    alice, bob = queue_server.token_client("researcher"), queue_server.token_client("researcher")
    job_id = add_job(queue_server, owner_id=user_id(alice))
    assert_error(bob.post(f"/api/v1/jobs/{job_id}/cancel"), 404, f"job {job_id} not found")
    answer = alice.post(f"/api/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled" and answer.json()["cancel_requested"] is True
    assert answer.json()["error"] == "cancelled by request"
    assert alice.get(f"/api/v1/jobs/{job_id}").json()["finished_at"] is not None
    again = alice.post(f"/api/v1/jobs/{job_id}/cancel")
    assert_error(again, 409, f"job {job_id} has already cancelled")

    events = read_events(alice, f"/api/v1/jobs/{job_id}/events")
    assert [name for name, _ in events] == ["progress", "end"]
    assert events[-1][1]["status"] == "cancelled"


def test_job_routes_check_login_role_and_csrf(queue_server):
    name, password = queue_server.create_user("researcher")
    browser = queue_server.login(name, password)
    job_id = add_job(queue_server, owner_id=user_id(browser))
    no_csrf = queue_server.client(cookies=browser.cookies)
    assert_error(no_csrf.post(f"/api/v1/jobs/{job_id}/cancel"), 403,
                 contains="CSRF token missing or wrong")  # fmt: skip
    assert browser.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    reader = queue_server.token_client("reader")
    assert_error(reader.get("/api/v1/jobs"), 403, "this needs the role admin or researcher")
    assert_error(reader.post(f"/api/v1/jobs/{job_id}/cancel"), 403)
    assert_error(queue_server.client().get(f"/api/v1/jobs/{job_id}/events"), 401)
    assert_error(queue_server.client().get("/api/v1/jobs"), 401)
    assert browser.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"


def test_events_follow_a_running_job_to_its_end(server):
    client = server.token_client("researcher")
    job_id = add_job(server, owner_id=user_id(client), params={"seconds": 3})
    events = read_events(client, f"/api/v1/jobs/{job_id}/events")
    names = [name for name, _ in events]
    assert names[-1] == "end" and names.count("end") == 1
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert len([p for p in progress if 0 < p < 1]) >= 2, events  # seen while it ran
    assert progress == sorted(progress)
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["progress"] == 1.0
    other = server.token_client("researcher")
    assert_error(other.get(f"/api/v1/jobs/{job_id}/events"), 404, f"job {job_id} not found")


def test_cancel_a_running_job_and_a_finished_one(server):
    client = server.token_client("researcher")
    job_id = add_job(server, owner_id=user_id(client), params={"seconds": 120})
    wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["progress"] > 0, 120,
               what="the sleep job running")  # fmt: skip
    answer = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "running"
    assert answer.json()["cancel_requested"] is True
    job = server.wait_for_job(client, job_id, timeout=60)
    assert job["status"] == "cancelled" and job["error"] == "cancelled by request"
    assert job["attempts"] == 1 and job["result"] is None

    done = add_job(server, owner_id=user_id(client), params={"seconds": 0})
    assert server.wait_for_job(client, done, timeout=120)["status"] == "succeeded"
    assert_error(
        client.post(f"/api/v1/jobs/{done}/cancel"), 409, f"job {done} has already succeeded"
    )


def test_a_volume_in_use_by_a_queued_job_is_not_deleted(queue_server):
    client = queue_server.token_client("researcher")
    image = client.post(
        "/api/v1/volumes", params={"name": "busy.nii.gz"}, content=nifti_bytes(ct_array(90))
    ).json()
    segmentation = client.post("/api/v1/segmentations", json={"image_id": image["id"]}).json()
    job_id = segmentation["job"]["id"]
    assert_error(
        client.delete(f"/api/v1/volumes/{image['id']}"),
        409,
        f"volume {image['id']} is in use by queued or running job(s) {job_id}: cancel them or "
        "wait until they finish",
    )
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/volumes/{image['id']}").status_code == 204
    assert_error(client.get(f"/api/v1/segmentations/{segmentation['id']}"), 404)
