"""Helpers of the admin tests: tiny training settings, SSE reading, process checks, cleanup."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.live_server import LiveServer

# A U-Net on two small phantoms, resampled to 4 mm with 32³ crops: a step takes about a second
# on an idle CPU (several on a busy one); the child needs 20-60 s to import and make phantoms.
TINY_TRAINING: dict[str, Any] = {
    "arch": "unet",
    "dataset": {
        "source": "phantoms",
        "phantoms": 2,
        "val_phantoms": 1,
        "phantom_shape": [64, 56, 40],
        "phantom_spacing": 4.0,
    },
    "epochs": 20,
    "warmup_epochs": 1,
    "val_every": 5,
    "max_steps": 20,
    "batch_size": 1,
    "roi_size": 32,
    "spacing_mm": 4.0,
    "workers": 0,
    "threads": 1,
}

# The same, long enough to be stopped or interrupted while it runs.
LONG_TRAINING: dict[str, Any] = {
    **TINY_TRAINING,
    "epochs": 5000,
    "max_steps": 100_000,
    "val_every": 0,
}

FINISHED = ("succeeded", "failed", "cancelled")


def admin_token(server: LiveServer) -> str:
    """An API token of a new admin (valid across restarts of the server on the same data)."""
    client = server.login(*server.create_user("admin"))
    try:
        answer = client.post("/api/v1/auth/tokens", json={"name": "admin tests"})
        answer.raise_for_status()
        return answer.json()["token"]
    finally:
        client.close()


def bearer(server: LiveServer, token: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {token}"})


def read_events(
    client: httpx.Client, url: str, *, timeout: float, stop: Callable[[list], bool] | None = None
) -> list[tuple[str, dict]]:
    """Server-sent events of ``url`` as (event, data) until ``end``, ``stop(events)`` or timeout."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    name, data = None, []
    with client.stream("GET", url, timeout=httpx.Timeout(timeout, read=60)) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and name is not None:
                events.append((name, json.loads("\n".join(data))))
                if name == "end" or (stop is not None and stop(events)):
                    break
                name, data = None, []
            if time.monotonic() > deadline:
                break
    return events


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def job(client: httpx.Client, job_id: int) -> dict:
    answer = client.get(f"/api/v1/admin/jobs/{job_id}")
    answer.raise_for_status()
    return answer.json()


def training_started(client: httpx.Client, job_id: int, points: int = 1) -> dict | None:
    """The job once its child runs and has logged ``points`` training steps (else None)."""
    state = job(client, job_id)
    assert state["status"] not in FINISHED, (
        f"job ended early: {state['error']}\n{state['log_tail']}"
    )
    if state["run"]["pid"] is None:
        return None
    logged = client.get(f"/api/v1/admin/jobs/{job_id}/points").json()["total"]
    return state if logged >= points else None


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants now."""
    try:
        root = psutil.Process(pid)
        return [root.pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def processes_of(data_dir: Path) -> list[psutil.Process]:
    """Live processes other than servers whose command line names ``data_dir`` (job children)."""
    marker = str(data_dir)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if marker in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def kill_leftovers(data_dir: Path) -> list[int]:
    """Kill what a failed test may have left running under ``data_dir`` (returns the pids)."""
    leftovers = processes_of(data_dir)
    for process in leftovers:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.kill()
        except psutil.Error:
            pass
    return [process.pid for process in leftovers]
