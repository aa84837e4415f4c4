"""A job's queue position and time left (``app/jobs/eta.py``), as the job API and its events
show them.

A server without a worker keeps jobs where the test puts them: finished jobs of known run time
make the typical duration, queued and running ones are placed by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.db.tables import Job
from app.jobs.eta import MIN_PROGRESS, running_eta
from tests.app.api_support import read_events, user_id
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    """A server whose jobs stay where they are put: no embedded worker."""
    live = LiveServer(
        tmp_path_factory.mktemp("eta"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield live
    live.close()


def _job(server, kind: str, status: str, *, owner_id=None, ran_s=None, ago_s=0.0, progress=0.0):
    """A job row: ``ran_s`` seconds of run time that ended (finished jobs) or started (running
    ones) ``ago_s`` seconds ago."""
    now = datetime.now(UTC)
    fields = {"kind": kind, "status": status, "params": {}, "owner_id": owner_id,
              "progress": progress}  # fmt: skip
    if status == "running":
        fields["started_at"] = now - timedelta(seconds=ago_s)
    elif ran_s is not None:
        fields["finished_at"] = now - timedelta(seconds=ago_s)
        fields["started_at"] = fields["finished_at"] - timedelta(seconds=ran_s)
    with server.session() as session:
        job = Job(**fields)
        session.add(job)
        session.commit()
        return job.id


def test_running_estimate_from_progress_and_elapsed_time():
    assert running_eta(0.5, 40.0) == pytest.approx(40.0)
    assert running_eta(0.8, 40.0) == pytest.approx(10.0)
    assert running_eta(1.0, 40.0) == 0.0
    # too early to tell: the typical duration less the time elapsed, else nothing
    assert running_eta(MIN_PROGRESS / 2, 5.0) is None
    assert running_eta(MIN_PROGRESS / 2, 5.0, typical_s=30.0) == pytest.approx(25.0)
    assert running_eta(MIN_PROGRESS / 2, 50.0, typical_s=30.0) is None


def test_queued_jobs_get_their_place_and_the_typical_duration_times_it(queue_server):
    client = queue_server.token_client("researcher")
    me = user_id(client)
    kind = "segment"
    first = _job(queue_server, kind, "queued", owner_id=me)
    # nothing to go on yet: a place in the queue but no estimate
    nothing = client.get(f"/api/v1/jobs/{first}").json()
    assert nothing["queue_position"] == 1 and nothing["eta_seconds"] is None
    for seconds in (30.0, 40.0, 50.0, 500.0, 45.0):  # median 45 s; an old outlier is outvoted
        _job(queue_server, kind, "succeeded", ran_s=seconds, ago_s=60)
    _job(queue_server, kind, "failed", ran_s=5000.0)  # failed runs say nothing about duration
    second = _job(queue_server, kind, "queued", owner_id=me)
    third = _job(queue_server, "synthesize", "queued", owner_id=me)  # the same worker's queue

    jobs = {
        j["id"]: j for j in client.get("/api/v1/jobs", params={"status": "queued"}).json()["items"]
    }
    assert [jobs[i]["queue_position"] for i in (first, second, third)] == [1, 2, 3]
    # the typical duration is of the job's own kind: no synthesis has finished yet
    assert [jobs[i]["eta_seconds"] for i in (first, second, third)] == [45, 90, None]

    cancelled = client.post(f"/api/v1/jobs/{first}/cancel").json()
    assert cancelled["queue_position"] is None and cancelled["eta_seconds"] is None
    moved = client.get(f"/api/v1/jobs/{second}").json()
    assert moved["queue_position"] == 1 and moved["eta_seconds"] == 45


def test_training_jobs_wait_in_their_own_queue(tmp_path):
    import app.training.jobs  # noqa: F401  (registers train and evaluate as supervised kinds)
    from app.db import make_engine, make_session_factory, upgrade_database
    from app.jobs.eta import queue_position

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        kinds = ["segment", "train", "synthesize", "evaluate", "segment"]
        jobs = [Job(kind=kind, params={}, status="queued") for kind in kinds]
        session.add_all(jobs)
        session.commit()
        assert [queue_position(session, job) for job in jobs] == [1, 1, 2, 2, 3]
    engine.dispose()


def test_a_running_job_estimates_from_its_progress_and_events_carry_it(queue_server):
    client = queue_server.token_client("researcher")
    me = user_id(client)
    halfway = _job(queue_server, "synthesize", "running", owner_id=me, ago_s=40, progress=0.5)
    body = client.get(f"/api/v1/jobs/{halfway}").json()
    assert body["queue_position"] is None
    assert 38 <= body["eta_seconds"] <= 60  # 40 s elapsed at 50 %: about 40 s left
    just_started = _job(queue_server, "sleep", "running", owner_id=me, ago_s=3, progress=0.01)
    assert client.get(f"/api/v1/jobs/{just_started}").json()["eta_seconds"] is None

    events = read_events(client, f"/api/v1/jobs/{halfway}/events?timeout_s=1")
    assert events[0][0] == "progress" and events[0][1]["eta_seconds"] is not None
    assert "queue_position" in events[0][1]


def test_finished_jobs_have_no_position_and_no_estimate(queue_server):
    client = queue_server.token_client("researcher")
    done = _job(queue_server, "segment", "succeeded", owner_id=user_id(client), ran_s=20.0)
    body = client.get(f"/api/v1/jobs/{done}").json()
    assert body["queue_position"] is None and body["eta_seconds"] is None
