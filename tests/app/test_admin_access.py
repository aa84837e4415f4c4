"""Only admins reach the admin area: every API route answers 401 to anonymous callers and 403 to
readers and researchers; every page redirects anonymous visitors to the login page and shows
readers and researchers a 403 page. Also: device discovery through a fake ``nvidia-smi`` (there
is no GPU here), and requests the API refuses with a reason.

The server of this module runs no jobs (``SYNTUMOR_EMBEDDED_WORKER=false``): jobs stay queued.
"""

from __future__ import annotations

import os
import stat
from contextlib import closing

import pytest
from sqlalchemy import select

from app.db.tables import Job, JobStatus, User
from app.db.training_tables import TrainingRun
from tests.app.admin_support import TINY_TRAINING, admin_token, bearer
from tests.live_server import LiveServer

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "NVIDIA H100 80GB HBM3, 1234 MiB, 81559 MiB"
"""

API_ROUTES = [
    ("GET", "/api/v1/admin/jobs"),
    ("GET", "/api/v1/admin/jobs/{train}"),
    ("GET", "/api/v1/admin/jobs/{train}/points"),
    ("GET", "/api/v1/admin/jobs/{train}/events"),
    ("GET", "/api/v1/admin/jobs/{evaluate}/evaluation"),
    ("GET", "/api/v1/admin/devices"),
    ("GET", "/api/v1/admin/models"),
    ("POST", "/api/v1/admin/models/unet_synt/pull"),
    ("POST", "/api/v1/admin/training-jobs"),
    ("POST", "/api/v1/admin/evaluation-jobs"),
    ("POST", "/api/v1/admin/jobs/{train}/stop"),
    ("POST", "/api/v1/admin/jobs/{train}/rerun"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/users/{user}/password"),
    ("POST", "/api/v1/users/{user}/deactivate"),
    ("POST", "/api/v1/users/{user}/activate"),
    ("DELETE", "/api/v1/users/{user}/tokens"),
]
PAGES = ["/admin", "/admin/train", "/admin/evaluate", "/admin/jobs/{train}", "/admin/users"]
STRONG_PASSWORD = "violet trombone cactus 42"
EVALUATION = {"model": "demo", "dataset": {"source": "phantoms", "phantoms": 1}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake_bin = tmp_path_factory.mktemp("bin")
    script = fake_bin / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = {"SYNTUMOR_EMBEDDED_WORKER": "false", "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    live = LiveServer(tmp_path_factory.mktemp("admin-access"), env=env).start()
    yield live
    live.close()


@pytest.fixture(scope="module")
def jobs(server) -> dict[str, int]:
    """A queued training job and a finished evaluation job (made in the database)."""
    with server.session() as session:
        train = Job(kind="train", status=JobStatus.QUEUED, params={**TINY_TRAINING, "gpus": 0})
        evaluate = Job(kind="evaluate", status=JobStatus.SUCCEEDED, params=EVALUATION,
                       result={"means": {}, "detection": {}, "cases": []})  # fmt: skip
        session.add_all([train, evaluate])
        session.flush()
        for row in (train, evaluate):
            session.add(
                TrainingRun(job_id=row.id, kind=row.kind, run_dir="/nonexistent", devices=[])
            )
        session.commit()
        ids = {"train": train.id, "evaluate": evaluate.id}
    user = server.create_user("researcher")[0]
    with server.session() as session:
        ids["user"] = session.scalar(select(User.id).where(User.username == user))
    return ids


@pytest.fixture(scope="module")
def admin(server):
    with bearer(server, admin_token(server)) as client:
        yield client


def _body(path: str):
    if path.endswith("training-jobs"):
        return TINY_TRAINING
    if path.endswith("evaluation-jobs"):
        return EVALUATION
    if path.endswith("/users"):
        return {"username": "matrix.user", "password": STRONG_PASSWORD}
    if path.endswith("/password"):
        return {"password": STRONG_PASSWORD}
    return None


def _call(client, method, path, jobs):
    url = path.format(**jobs)
    if url.endswith("/events"):
        with client.stream(method, url, params={"timeout_s": 1}) as response:
            response.read()
            return response
    return client.request(method, url, json=_body(path))


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_api_route_is_for_admins_only(server, jobs, admin, method, path):
    with server.client() as anonymous:
        answer = _call(anonymous, method, path, jobs)
        assert answer.status_code == 401
        assert answer.json()["detail"].startswith("log in first")
    for role in ("reader", "researcher"):
        with server.token_client(role) as client:
            answer = _call(client, method, path, jobs)
            assert answer.status_code == 403, (role, answer.text)
            assert answer.json() == {"detail": "this needs the role admin", "code": "forbidden"}
    answer = _call(admin, method, path, jobs)
    assert answer.status_code in (200, 201, 202), answer.text


@pytest.mark.parametrize("role", ["reader", "researcher", "admin"])
def test_every_role_changes_its_own_password(server, role):
    with server.client(follow_redirects=False) as anonymous:
        assert anonymous.post("/api/v1/auth/password", json={}).status_code == 401
        assert anonymous.get("/account").headers["location"] == "/login?next=/account"
    name, password = server.create_user(role)
    with closing(server.login(name, password)) as client:
        assert client.get("/account").status_code == 200
        body = {"current_password": password, "new_password": STRONG_PASSWORD}
        answer = client.post("/api/v1/auth/password", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["username"] == name


@pytest.mark.parametrize("path", PAGES)
def test_page_is_for_admins_only(server, jobs, path):
    url = path.format(**jobs)
    with server.client(follow_redirects=False) as anonymous:
        answer = anonymous.get(url)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/login?next={url}"
    for role in ("reader", "researcher"):
        with closing(server.login(*server.create_user(role))) as client:
            answer = client.get(url)
            assert answer.status_code == 403
            assert "this page needs the role admin" in answer.text
    with closing(server.login(*server.create_user("admin"))) as client:
        answer = client.get(url)
        assert answer.status_code == 200 and "SynTumor" in answer.text


def test_devices_come_from_nvidia_smi(admin):
    devices = admin.get("/api/v1/admin/devices").json()
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used_mib": 1234}
    assert devices["gpus"] == [{**gpu, "memory_total_mib": 81559, "job_id": None}]
    assert devices["cpu"]["name"] == "CPU" and devices["cpu"]["slots"] == 1


def test_more_gpus_than_the_machine_has_are_refused(admin):
    answer = admin.post("/api/v1/admin/training-jobs", json={**TINY_TRAINING, "gpus": 2})
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "gpus: asked for 2 but this machine has 1 GPU(s); use 0 for the CPU"
    )


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"warmup_epochs": 20}, "warmup_epochs must be below epochs, got 20 >= 20"),
        ({"arch": "swin_unetrv2_tiny", "roi_size": 48},
         "Swin-UNETR needs roi_size divisible by 32, got (48, 48, 48)"),
        ({"syn_types": {"smal": 1.0}}, "unknown tumor type 'smal' for organ 'liver'"),
        ({"dataset": {"source": "volumes", "train_labels": [999]}},
         "volume 999 is not a label map of a stored image"),
        ({"dataset": {"source": "decathlon", "path": "/nonexistent/fold.json"}},
         "data list /nonexistent/fold.json does not exist on the server"),
        ({"model_name": "Bad Name"}, "model_name: model name must be 1-64 lower-case letters"),
    ],
)  # fmt: skip
def test_bad_training_requests_are_refused_with_a_reason(admin, change, detail):
    answer = admin.post("/api/v1/admin/training-jobs", json={**TINY_TRAINING, **change})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(detail), answer.json()["detail"]


def test_unknown_model_is_refused_for_evaluation(admin):
    answer = admin.post("/api/v1/admin/evaluation-jobs", json={**EVALUATION, "model": "nope"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("unknown model 'nope'")


def test_a_training_job_is_not_an_evaluation(admin, jobs):
    answer = admin.get(f"/api/v1/admin/jobs/{jobs['train']}/evaluation")
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"job {jobs['train']} is a train job, not an evaluation"
