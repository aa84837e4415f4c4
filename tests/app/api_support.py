"""Helpers of the REST API tests: error assertions and looks at a live server's data folder."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
from sqlalchemy import func, select

from app.db.tables import Job, Volume

SHAPE = (24, 20, 16)


def assert_error(answer: httpx.Response, status: int, detail: str | None = None, *, contains=None):
    """The answer has ``status`` and the one error body; ``detail`` exact or ``contains`` part."""
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    body = answer.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if detail is not None:
        assert body["detail"] == detail, body["detail"]
    for part in [contains] if isinstance(contains, str) else contains or []:
        assert part in body["detail"], body["detail"]
    return body


def volume_count(server) -> int:
    with server.session() as session:
        return session.scalar(select(func.count()).select_from(Volume))


def stored_files(server) -> list[Path]:
    """Every file under the data folder's ``tmp/`` and ``volumes/``."""
    root = server.data_dir
    return sorted(
        p for folder in ("tmp", "volumes") for p in (root / folder).rglob("*") if p.is_file()
    )


def add_job(server, *, kind: str = "sleep", params=None, owner_id=None, status="queued") -> int:
    """Put a job straight into the server's database (kinds that no route creates)."""
    with server.session() as session:
        job = Job(kind=kind, params=params or {}, owner_id=owner_id, status=status)
        session.add(job)
        session.commit()
        return job.id


def user_id(client: httpx.Client) -> int:
    return client.get("/api/v1/auth/me").json()["user"]["id"]


def read_events(client: httpx.Client, url: str, timeout: float = 900.0) -> list[tuple[str, dict]]:
    """Read a server-sent event stream to its end: [(event name, data), ...]."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", url, timeout=timeout) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        name, data = None, []
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name:
                events.append((name, json.loads("\n".join(data))))
                if name == "end":
                    break
                name, data = None, []
            assert time.monotonic() < deadline, "event stream did not end"
    return events


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s")


def nifti_bytes(array, *, spacing=(2.0, 2.0, 2.5), compressed=True) -> bytes:
    """A NIfTI-1 file of ``array`` (any dimensions) with a diagonal affine."""
    zooms = list(spacing) + [1.0] * (np.ndim(array) - 3)
    affine = np.diag([*spacing[:3], 1.0]) if np.ndim(array) >= 3 else np.eye(4)
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.header.set_zooms(zooms[: np.ndim(array)])
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def ct_array(seed: int = 0, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (40.0 + 15.0 * rng.standard_normal(shape)).astype(np.float32)
