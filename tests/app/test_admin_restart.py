"""A server crash during training loses nothing: the child, in its own session, survives the
SIGKILL of the server's process group; the restarted server re-attaches it and keeps following
its files, or — when the child died too — marks the job failed with the reason. No process of
the job is left over."""

from __future__ import annotations

import os
import signal

import pytest

from tests.app.admin_support import (
    LONG_TRAINING,
    admin_token,
    bearer,
    job,
    kill_leftovers,
    process_gone,
    processes_of,
    training_started,
    tree_pids,
    wait_for,
)
from tests.live_server import LiveServer


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    yield folder
    kill_leftovers(folder)


def _start_long_training(server: LiveServer, token: str) -> tuple[int, int]:
    with bearer(server, token) as client:
        answer = client.post("/api/v1/admin/training-jobs", json=LONG_TRAINING)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        state = wait_for(lambda: training_started(client, job_id), 600, "the first steps")
    return job_id, state["run"]["pid"]


def _points(client, job_id: int) -> int:
    return client.get(f"/api/v1/admin/jobs/{job_id}/points").json()["total"]


def test_restart_reattaches_a_running_child(data_dir):
    server = LiveServer(data_dir).start()
    token = admin_token(server)
    job_id, pid = _start_long_training(server, token)
    server.stop(kill=True)
    assert not server.alive()
    assert not process_gone(pid), "the training child died with the server"
    restarted = LiveServer(data_dir).start()
    try:
        with bearer(restarted, token) as client:
            before = _points(client, job_id)
            state = wait_for(
                lambda: (lambda s: s if "taking the job over" in s["log_tail"] else None)(
                    job(client, job_id)
                ),
                60,
                "the take-over",
            )
            assert state["status"] == "running" and state["run"]["pid"] == pid
            assert f"process {pid} still runs" in state["log_tail"]
            wait_for(lambda: _points(client, job_id) > before + 1, 300, "new points after restart")
            pids = tree_pids(pid)
            assert client.post(f"/api/v1/admin/jobs/{job_id}/stop").status_code == 200
            final = wait_for(lambda: (lambda s: s if s["finished"] else None)(job(client, job_id)),
                             10, "the stop")  # fmt: skip
            assert final["status"] == "cancelled"
            assert all(process_gone(each) for each in pids)
            assert processes_of(data_dir) == []
    finally:
        restarted.close()


def test_restart_fails_a_job_whose_child_died_meanwhile(data_dir):
    server = LiveServer(data_dir).start()
    token = admin_token(server)
    job_id, pid = _start_long_training(server, token)
    server.stop(kill=True)
    pids = tree_pids(pid)
    os.killpg(pid, signal.SIGKILL)  # the child dies while no server watches it
    wait_for(lambda: all(process_gone(each) for each in pids), 10, "the child's death")
    restarted = LiveServer(data_dir).start()
    try:
        with bearer(restarted, token) as client:
            final = wait_for(lambda: (lambda s: s if s["finished"] else None)(job(client, job_id)),
                             60, "the job to be marked")  # fmt: skip
            assert final["status"] == "failed"
            assert final["error"].startswith(
                "the training process ended while the server was down (it was not watched when "
                "it stopped); last output:"
            ), final["error"]
            assert f"process {pid} is gone" in final["log_tail"]
            assert processes_of(data_dir) == []
            rerun = client.post(f"/api/v1/admin/jobs/{job_id}/rerun")
            assert rerun.status_code == 202
            assert client.post(f"/api/v1/admin/jobs/{rerun.json()['id']}/stop").status_code == 200
    finally:
        restarted.close()
