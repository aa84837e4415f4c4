"""Hardening of issue 17 against a live server: models by registry name only (item 1), integers
bounded to the database's range on every route (item 3), volumes scoped to their owner (item 6),
security headers and cookies (item 8).

The server of this module runs no jobs (``SYNTUMOR_EMBEDDED_WORKER=false``): jobs stay queued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.model_registry import ModelRegistryError, all_entries, resolve_model
from tests.app.admin_support import admin_token, bearer
from tests.app.api_support import assert_error, ct_array, nifti_bytes
from tests.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "models" / "demo" / "model.pt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SYNTUMOR_EMBEDDED_WORKER": "false"}
    live = LiveServer(tmp_path_factory.mktemp("hardening"), env=env).start()
    yield live
    live.close()


@pytest.fixture(scope="module")
def researcher(server):
    with server.token_client("researcher") as client:
        yield client


@pytest.fixture(scope="module")
def admin(server):
    with bearer(server, admin_token(server)) as client:
        yield client


def upload(client, name: str = "ct.nii.gz", seed: int = 0, **params) -> dict:
    answer = client.post(
        "/api/v1/volumes", params={"name": name, **params}, content=nifti_bytes(ct_array(seed))
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


@pytest.fixture(scope="module")
def image(researcher) -> dict:
    return upload(researcher, seed=11)


# --- 1. models by registry name --------------------------------------------------------------


def _names_only(server, name: str) -> str:
    known = ", ".join(all_entries(server.data_dir))
    return f"unknown model {name!r}: choose one of the registered models: {known}"


@pytest.mark.parametrize(
    "model",
    ["/etc/shadow", "/nonexistent/x.pt", "../var/secret_key", str(DEMO_CHECKPOINT), "model.pt"],
)
def test_a_path_is_not_a_model_over_http(server, researcher, image, model):
    answer = researcher.post(
        "/api/v1/segmentations", json={"image_id": image["id"], "model": model}
    )
    assert_error(answer, 422, _names_only(server, model))


def test_an_evaluation_takes_a_registered_name_only(server, admin):
    body = {"model": str(DEMO_CHECKPOINT), "dataset": {"source": "phantoms", "phantoms": 1}}
    answer = admin.post("/api/v1/admin/evaluation-jobs", json=body)
    assert_error(answer, 422, _names_only(server, str(DEMO_CHECKPOINT)))


def test_the_worker_resolves_names_only_and_the_cli_still_takes_paths(tmp_path):
    with pytest.raises(ModelRegistryError, match="choose one of the registered models"):
        resolve_model(str(DEMO_CHECKPOINT), tmp_path, allow_path=False)
    assert resolve_model(str(DEMO_CHECKPOINT), tmp_path) == (DEMO_CHECKPOINT, "unet")
    assert resolve_model("demo", tmp_path, allow_path=False)[0] == DEMO_CHECKPOINT
