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


# --- 3. integers bounded to the database's range ---------------------------------------------

HUGE = 2**64


def _integer_params(operation: dict, where: str) -> list[str]:
    return [
        p["name"]
        for p in operation.get("parameters", [])
        if p["in"] == where and "integer" in str(p["schema"])
    ]


def _operations(server):
    schema = server.client().get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def _unbounded_integers(node, where="") -> list[str]:
    if isinstance(node, dict):
        found = [where] if node.get("type") == "integer" and "maximum" not in node else []
        for key, value in node.items():
            found += _unbounded_integers(value, f"{where}/{key}")
        return found
    if isinstance(node, list):
        return [hit for i, item in enumerate(node) for hit in _unbounded_integers(item, where)]
    return []


def test_every_integer_of_the_api_has_a_maximum(server):
    schema = server.client().get("/openapi.json").json()
    del schema["components"]["schemas"]["ValidationError"]  # FastAPI's own (error locations)
    assert _unbounded_integers(schema) == []


def test_huge_ids_in_every_path_are_404_never_500(server, admin):
    swept = 0
    for path, method, operation in _operations(server):
        ids = _integer_params(operation, "path")
        if not ids:
            continue
        url = path.format(**{p["name"]: HUGE if p["name"] in ids else "x"
                             for p in operation["parameters"] if p["in"] == "path"})  # fmt: skip
        answer = admin.request(method, url, json={} if method in ("POST", "PUT", "PATCH") else None)
        assert answer.status_code == 404, (method, url, answer.text)
        noun = ids[-1].removesuffix("_id").replace("_", " ")
        assert answer.json()["detail"] == f"{noun} {HUGE} not found", (method, url)
        swept += 1
    assert swept >= 25


def test_huge_integers_in_every_query_are_422_never_500(server, admin):
    swept = 0
    for path, method, operation in _operations(server):
        for name in _integer_params(operation, "query"):
            url = path.format(**{p["name"]: 1 for p in operation.get("parameters", [])
                                 if p["in"] == "path"})  # fmt: skip
            answer = admin.request(method, url, params={name: HUGE})
            assert answer.status_code == 422, (method, url, name, answer.text)
            assert name in answer.json()["detail"]
            swept += 1
    assert swept >= 10


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/segmentations", {"image_id": HUGE}, "image_id"),
        ("/api/v1/syntheses", {"image_id": 1, "mask_id": HUGE}, "mask_id"),
        ("/api/v1/syntheses", {"image_id": 1, "mask_id": 1, "mask_labels": [HUGE]}, "mask_labels.0"),
        ("/api/v1/admin/evaluation-jobs",
         {"model": "demo", "dataset": {"source": "volumes", "labels": [HUGE]}}, "labels.0"),
        ("/api/v1/admin/training-jobs",
         {"dataset": {"source": "volumes", "train_labels": [HUGE]}}, "train_labels.0"),
    ],
)  # fmt: skip
def test_huge_ids_in_bodies_are_422(admin, url, body, field):
    answer = admin.post(url, json=body)
    assert answer.status_code == 422, answer.text
    assert f"{field}: Input should be less than or equal to 2147483647" in answer.json()["detail"]


def test_huge_ids_in_pages_are_404_pages(server):
    from contextlib import closing

    from app.main import _routers

    def routes(router):
        for route in router.routes:
            yield from (
                routes(route.original_router) if hasattr(route, "original_router") else [route]
            )

    pages = [route.path for router, prefix in _routers() if not prefix for route in routes(router)
             if "_id}" in route.path and "GET" in route.methods]  # fmt: skip
    assert len(pages) >= 8
    with closing(server.login(*server.create_user("admin"))) as client:
        for page in pages:
            url = page.split("{")[0] + str(HUGE) + page.split("}")[1]
            answer = client.get(url, headers={"Accept": "text/html"})
            assert answer.status_code == 404, (url, answer.text[:300])
            assert "text/html" in answer.headers["content-type"] and "not found" in answer.text
