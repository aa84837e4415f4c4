"""The job worker: claiming, cancelling, and recovering jobs whose worker died.

The first tests drive :class:`app.jobs.worker.Worker` in this process on a real database (SQLite,
or PostgreSQL in CI's second pass); the last ones (``slow``: they segment) cancel a real
server's segmentation midway, and kill a server in the middle of one and start it again on
the same data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import app.handlers  # noqa: F401  (registers the job kinds, "sleep" among them)
from app.db import make_engine, make_session_factory, upgrade_database
from app.db.tables import Job, Segmentation, Volume
from app.jobs.worker import Worker, new_worker_id, request_cancel
from app.settings import Settings
from app.volumes.storage import Storage
from tests.app.api_support import assert_error, user_id, wait_until
from tests.live_server import LiveServer
from tests.live_server import test_database_url as fresh_database_url

HOST = socket.gethostname()[:48]


@pytest.fixture
def database(tmp_path):
    """(settings, session factory, storage) on a fresh migrated database."""
    url = fresh_database_url(tmp_path)
    upgrade_database(url)
    engine = make_engine(url)
    settings = Settings(data_dir=tmp_path, database_url=url, stale_job_s=60, max_job_attempts=2)
    yield settings, make_session_factory(engine), Storage(tmp_path)
    engine.dispose()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running_job(factory, *, worker_id: str, heartbeat_age_s: float = 0.0, **fields) -> int:
    now = datetime.now(UTC)
    values = {"kind": "sleep", "status": "running", "attempts": 1, **fields}
    with factory() as session:
        job = Job(
            worker_id=worker_id,
            started_at=now - timedelta(seconds=heartbeat_age_s + 1),
            heartbeat_at=now - timedelta(seconds=heartbeat_age_s),
            **values,
        )
        session.add(job)
        session.commit()
        return job.id


def job_row(factory, job_id: int) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def test_recover_requeues_fails_or_cancels_jobs_of_dead_local_workers(database):
    settings, factory, storage = database
    gone = f"{HOST}:{dead_pid()}:embedded:abc"
    requeued = running_job(factory, worker_id=gone)
    exhausted = running_job(factory, worker_id=gone, attempts=2)
    cancelled = running_job(factory, worker_id=gone, cancel_requested=True)
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("test"))

    assert sorted(worker.recover()) == sorted([requeued, exhausted, cancelled])
    job = job_row(factory, requeued)
    assert job.status == "queued" and job.worker_id is None and job.attempts == 1
    assert "interrupted" in job.message and "interrupted" in job.log
    job = job_row(factory, exhausted)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith(f"interrupted (worker {gone} gone) after 2 of 2 attempt(s)")
    job = job_row(factory, cancelled)
    assert job.status == "cancelled" and job.error == "cancelled by request"
    assert worker.recover() == []  # nothing left to do


def test_recover_leaves_live_workers_alone_and_uses_heartbeats(database):
    settings, factory, storage = database
    here_alive = running_job(factory, worker_id=f"{HOST}:{os.getppid()}:worker:x")
    elsewhere_fresh = running_job(factory, worker_id="other-host:123:worker:y", heartbeat_age_s=5)
    elsewhere_stale = running_job(factory, worker_id="other-host:123:worker:z", heartbeat_age_s=300)
    # A live pid with a stale heartbeat: the pid was reused, or the worker hangs.
    here_stale = running_job(factory, worker_id=f"{HOST}:{os.getppid()}:w:q", heartbeat_age_s=300)
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("test"))

    assert sorted(worker.recover()) == sorted([elsewhere_stale, here_stale])
    assert job_row(factory, here_alive).status == "running"
    assert job_row(factory, elsewhere_fresh).status == "running"
    assert job_row(factory, elsewhere_stale).status == "queued"


def test_recover_knows_an_earlier_process_that_had_this_pid(database):
    """A restarted container's server is pid 1 again: same host, same pid, another process."""
    settings, factory, storage = database
    earlier = running_job(factory, worker_id=f"{HOST}:{os.getpid()}:embedded:0123abcd.ef0123")
    sibling = running_job(factory, worker_id=new_worker_id("training"))  # this very process
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("test"))
    assert worker.recover() == [earlier]
    assert job_row(factory, sibling).status == "running"


def test_recover_takes_back_this_workers_own_leftovers(database):
    settings, factory, storage = database
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("test"))
    leftover = running_job(factory, worker_id=worker.worker_id)
    assert worker.recover() == [leftover]
    assert job_row(factory, leftover).status == "queued"


def test_claims_of_racing_workers_never_share_a_job(database):
    settings, factory, storage = database
    with factory() as session:
        session.add_all([Job(kind="sleep", params={}) for _ in range(40)])
        session.commit()
    workers = [
        Worker(settings, factory, storage, worker_id=new_worker_id(f"w{i}")) for i in range(4)
    ]
    claimed: list[list[int]] = [[] for _ in workers]

    def claim_all(index: int) -> None:
        for _ in range(200):
            job_id = workers[index].claim()
            if job_id is not None:
                claimed[index].append(job_id)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for ids in claimed for job_id in ids]
    assert sorted(everything) == sorted(set(everything)) and len(everything) == 40
    with factory() as session:
        jobs = session.scalars(select(Job)).all()
        assert all(j.status == "running" and j.attempts == 1 for j in jobs)
        owner = {job_id: workers[i].worker_id for i, ids in enumerate(claimed) for job_id in ids}
        assert all(j.worker_id == owner[j.id] for j in jobs)


def test_a_stale_cancel_never_overwrites_a_claimed_job(database):
    settings, factory, storage = database
    with factory() as session:
        job = Job(kind="sleep", params={"seconds": 0})
        session.add(job)
        session.commit()
        job_id = job.id
    api_session = factory()
    stale = api_session.get(Job, job_id)  # the API read it while queued…
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("test"))
    assert worker.claim() == job_id  # …then a worker claimed it
    request_cancel(api_session, stale)
    api_session.commit()
    api_session.close()
    job = job_row(factory, job_id)
    assert job.status == "running" and job.cancel_requested is True
    worker.run_job(job_id)
    assert job_row(factory, job_id).status == "cancelled"


def test_a_worker_does_not_finish_a_job_taken_from_it(database):
    settings, factory, storage = database

    with factory() as session:
        session.add(Job(kind="sleep", params={"seconds": 0}))
        session.commit()
    slow = Worker(settings, factory, storage, worker_id=new_worker_id("slow"))
    job_id = slow.claim()
    with factory() as session:  # meanwhile it was recovered and given to another worker
        job = session.get(Job, job_id)
        job.worker_id, job.attempts = "other-host:1:worker:new", 2
        session.commit()
    slow.run_job(job_id)
    job = job_row(factory, job_id)
    assert job.status == "running" and job.worker_id == "other-host:1:worker:new"


# --- a real server, killed mid-job -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory):
    """A small phantom CT as NIfTI bytes: a segmentation takes seconds, not minutes."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    folder = tmp_path_factory.mktemp("worker-ct")
    phantom = make_phantom(seed=8, shape=(48, 40, 16), spacing=(4.0, 4.0, 6.0))
    return save_nifti(phantom.image, folder / "small_ct.nii.gz").read_bytes()


def _start_segmentation(server, client, image_bytes, **body) -> tuple[dict, int]:
    image = client.post("/api/v1/volumes", params={"name": "ct.nii.gz"}, content=image_bytes)
    assert image.status_code in (200, 201), image.text
    answer = client.post("/api/v1/segmentations", json={"image_id": image.json()["id"], **body})
    assert answer.status_code == 202, answer.text
    return answer.json(), image.json()["id"]


def _segmenting(client, job_id: int) -> dict | None:
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] in ("queued", "running"), job
    return job if job["status"] == "running" and job["progress"] >= 0.05 else None


def _no_results(server, segmentation_id: int, image_id: int, job_id: int) -> None:
    with server.session() as session:
        row = session.get(Segmentation, segmentation_id)
        assert row.label_id is None and row.lesions is None and row.dicom_seg_path is None
        labels = session.scalars(select(Volume).where(Volume.image_id == image_id)).all()
        assert labels == []
    assert not (server.data_dir / "results" / str(job_id)).exists()


@pytest.mark.slow
def test_cancel_a_segmentation_midway(server, small_ct):
    client = server.token_client("researcher")
    # A high overlap makes many windows: the job is still segmenting when the cancel comes.
    created, image_id = _start_segmentation(server, client, small_ct, overlap=0.9)
    job_id = created["job"]["id"]
    wait_until(lambda: _segmenting(client, job_id), 600, 0.2, "the segmentation running")
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").json()["cancel_requested"] is True
    job = server.wait_for_job(client, job_id, timeout=300)
    assert job["status"] == "cancelled", job
    assert job["result"] is None and job["progress"] < 1.0
    _no_results(server, created["id"], image_id, job_id)
    assert_error(client.get(f"/api/v1/segmentations/{created['id']}/lesions.json"), 404,
                 "lesions.json is not there yet: the job is cancelled")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("attempts", [2, 1], ids=["retried", "attempts-exhausted"])
def test_a_killed_server_resumes_or_fails_its_segmentation(tmp_path, small_ct, attempts):
    env = {"SYNTUMOR_MAX_JOB_ATTEMPTS": str(attempts)}
    first = LiveServer(tmp_path / "data", env=env).start()
    try:
        client = first.token_client("researcher")
        token = client.headers["Authorization"]
        created, image_id = _start_segmentation(first, client, small_ct)
        job_id = created["job"]["id"]
        wait_until(lambda: _segmenting(client, job_id), 600, 0.1, "the segmentation running")
    finally:
        first.stop(kill=True)  # SIGKILL mid-job: nothing gets to clean up
    with first.session() as session:
        assert session.get(Job, job_id).status == "running"

    second = LiveServer(tmp_path / "data", env=env, database_url=first.database_url).start()
    try:
        client = second.client(headers={"Authorization": token})
        job = second.wait_for_job(client, job_id, timeout=900)
        assert job["attempts"] == (2 if attempts == 2 else 1)
        assert "interrupted" in job["log"]
        if attempts == 2:
            assert job["status"] == "succeeded", job
            result = client.get(f"/api/v1/segmentations/{created['id']}").json()
            assert result["label_id"] is not None and result["lesions"] is not None
        else:
            assert job["status"] == "failed", job
            assert job["error"].startswith("interrupted (worker ")
            assert "after 1 of 1 attempt(s)" in job["error"]
            _no_results(second, created["id"], image_id, job_id)
        assert user_id(client) > 0  # the restarted server serves the old token
    finally:
        second.close()
        first.close()
