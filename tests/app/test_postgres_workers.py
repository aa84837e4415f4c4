"""Two ``syntumor worker`` processes on one PostgreSQL database never run a job twice.

This is the scale-out set-up of the design: workers on several machines claim jobs from one
PostgreSQL database (``SELECT … FOR UPDATE SKIP LOCKED``). Here two real worker processes share
100 queued ``sleep`` jobs. Each run leaves a marker file in the job's result folder, so a job
run twice would show two markers even if the database forgot it. CI runs this in its PostgreSQL
pass; without ``SYNTUMOR_TEST_DATABASE_URL`` it is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.db import make_engine, make_session_factory, upgrade_database
from app.db.tables import FINISHED_STATUSES, Job
from tests.live_server import REPO
from tests.live_server import test_database_url as fresh_database_url

JOBS = 100
JOB_SECONDS = 0.05
WORKERS = 2

pytestmark = pytest.mark.skipif(
    not os.environ.get("SYNTUMOR_TEST_DATABASE_URL"),
    reason="needs PostgreSQL: set SYNTUMOR_TEST_DATABASE_URL (.ci/run does, in its second pass)",
)


def _start_worker(data_dir, url, index: int) -> tuple[subprocess.Popen, object]:
    log = (data_dir / f"worker-{index}.log").open("wb")
    env = {
        **os.environ,
        "SYNTUMOR_DATA_DIR": str(data_dir),
        "SYNTUMOR_DATABASE_URL": url,
        "SYNTUMOR_WORKER_POLL_S": "0.05",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--kind", "sleep"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return process, log


def _wait_for(predicate, timeout: float, what: str, processes=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for process in processes:
            assert process.poll() is None, f"a worker exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.2)


def test_two_worker_processes_share_the_queue_and_run_each_job_once(tmp_path):
    url = fresh_database_url(tmp_path)
    assert url.startswith("postgresql")
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    started = [_start_worker(tmp_path, url, i) for i in range(WORKERS)]
    processes = [process for process, _ in started]
    try:
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        _wait_for(lambda: all(b"polling" in p.read_bytes() for p in logs), 120,
                  "both workers polling", processes)  # fmt: skip
        with factory() as session:  # queued at once, after both workers are up
            session.add_all(Job(kind="sleep", params={"seconds": JOB_SECONDS}) for _ in range(JOBS))
            session.commit()

        def all_finished() -> bool:
            with factory() as session:
                query = select(func.count()).where(Job.status.in_(FINISHED_STATUSES))
                return session.scalar(query) == JOBS

        _wait_for(all_finished, 300, "all jobs finished", processes)
    finally:
        for process, log in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
            log.close()

    with factory() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
    engine.dispose()
    assert [j.status for j in jobs] == ["succeeded"] * JOBS
    assert all(j.attempts == 1 for j in jobs)
    assert all(j.result["worker_id"] == j.worker_id for j in jobs)
    for job in jobs:
        markers = list((tmp_path / "results" / str(job.id)).glob("ran-*"))
        assert [m.name for m in markers] == [job.result["marker"]], (
            f"job {job.id} ran {len(markers)}×"
        )
    share = Counter(j.worker_id for j in jobs)
    assert len(share) == WORKERS and min(share.values()) >= 5, share
    assert all(process.returncode == 0 for process in processes), [p.returncode for p in processes]
