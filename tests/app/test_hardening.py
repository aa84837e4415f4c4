"""Hardening of issue 17 against a live server: models by registry name only (item 1), integers
bounded to the database's range on every route (item 3), volumes scoped to their owner (item 6),
security headers and cookies (item 8).

The server of this module runs no jobs (``SYNTUMOR_EMBEDDED_WORKER=false``): jobs stay queued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.registry.catalog import ModelRegistryError, all_entries, resolve_model
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


def _resolved(node, components: dict, seen: frozenset = frozenset()):
    """``node`` with every ``$ref`` replaced by what it names (a cycle is cut)."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            return {} if name in seen else _resolved(components[name], components, seen | {name})
        return {key: _resolved(value, components, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(item, components, seen) for item in node]
    return node


def test_every_integer_of_the_api_has_a_maximum(server):
    """Every integer a client sends (parameters, request bodies) is bounded; answers' integers
    (ids, counts in response models) are the server's own."""
    schema = server.client().get("/openapi.json").json()
    components = schema["components"]["schemas"]
    inputs = {
        f"{method.upper()} {path}": _resolved(
            {
                "parameters": operation.get("parameters", []),
                "body": operation.get("requestBody", {}),
            },
            components,
        )  # fmt: skip
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert sum("'integer'" in str(node) for node in inputs.values()) >= 25  # the walk sees them
    assert [hit for where, node in inputs.items() for hit in _unbounded_integers(node, where)] == []


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


# --- 6. volumes scoped to their owner ------------------------------------------------------------


@pytest.fixture(scope="module")
def other(server):
    """A second researcher, who must not see the first one's volumes."""
    with server.token_client("researcher") as client:
        yield client


def _study_case(server, owner_id: int | None, source: str = "study") -> int:
    """A volume a study's preparation made (source 'study'), owned by the study's owner."""
    from app.db.tables import Volume

    with server.session() as session:
        template = session.get(Volume, 1)
        case = Volume(name="case 1", kind="image", source=source, sha256=template.sha256,
                      path=template.path, size_bytes=template.size_bytes, shape=template.shape,
                      spacing=template.spacing, meta={}, owner_id=owner_id)  # fmt: skip
        session.add(case)
        session.commit()
        return case.id


def _me(client) -> int:
    return client.get("/api/v1/auth/me").json()["user"]["id"]


def test_a_researcher_sees_only_their_own_volumes(server, researcher, other, admin, image):
    theirs = upload(other, name="theirs.nii.gz", seed=12)
    listed = {v["id"] for v in researcher.get("/api/v1/volumes").json()["items"]}
    assert image["id"] in listed and theirs["id"] not in listed
    assert {v["id"] for v in other.get("/api/v1/volumes").json()["items"]} == {theirs["id"]}
    detail = f"volume {image['id']} not found"
    for method, url in [("GET", f"/api/v1/volumes/{image['id']}"),
                        ("GET", f"/api/v1/volumes/{image['id']}/file"),
                        ("DELETE", f"/api/v1/volumes/{image['id']}")]:  # fmt: skip
        assert_error(other.request(method, url), 404, detail)
    answer = other.post("/api/v1/segmentations", json={"image_id": image["id"], "model": "demo"})
    assert_error(answer, 404, detail)
    synthesis = {"image_id": theirs["id"], "mask_id": image["id"]}
    assert_error(other.post("/api/v1/syntheses", json=synthesis), 404, detail)
    label = other.post("/api/v1/volumes", content=nifti_bytes((ct_array(1) > 0).astype("uint8")),
                       params={"name": "l.nii.gz", "kind": "label", "image_id": image["id"]})  # fmt: skip
    assert_error(label, 404, f"{detail}: give the id of a stored image")
    everything = {v["id"] for v in admin.get("/api/v1/volumes").json()["items"]}
    assert {image["id"], theirs["id"]} <= everything
    assert admin.get(f"/api/v1/volumes/{image['id']}/file").status_code == 200


def test_volume_pages_are_scoped_too(server, image):
    from contextlib import closing

    with closing(server.login(*server.create_user())) as browser:
        page = browser.get(f"/volumes/{image['id']}", headers={"Accept": "text/html"})
        assert page.status_code == 404 and f"volume {image['id']} not found" in page.text
        assert f"/volumes/{image['id']}" not in browser.get("/volumes").text
        assert f'"id": {image["id"]},' not in browser.get("/synthesize").text


def test_a_studys_case_volumes_are_seen_through_the_study_only(server, researcher, admin, image):
    case = _study_case(server, _me(researcher))
    assert case not in {v["id"] for v in researcher.get("/api/v1/volumes").json()["items"]}
    assert_error(researcher.get(f"/api/v1/volumes/{case}"), 404, f"volume {case} not found")
    assert admin.get(f"/api/v1/volumes/{case}").status_code == 200


def test_volumes_without_an_owner_are_the_shared_library(server, other):
    shared = _study_case(server, None, source="sample")  # as the operator's imports are
    assert other.get(f"/api/v1/volumes/{shared}").status_code == 200
    answer = other.delete(f"/api/v1/volumes/{shared}")
    assert_error(answer, 403, "only the owner of a volume or an admin may delete it")


def test_a_study_cannot_be_built_from_someone_elses_volumes(other, image):
    spec = {"title": "Borrowed", "prepare": False,
            "arms": [{"name": "Real", "truth": "real", "volumes": [{"image_id": image["id"]}]},
                     {"name": "Synthetic", "truth": "synthetic", "source": "synthesize",
                      "healthy": [{"image_id": image["id"]}]}]}  # fmt: skip
    for url in ("/api/v1/studies/checks", "/api/v1/studies"):
        assert_error(other.post(url, json=spec), 404, f"volume {image['id']} not found")


# --- 9. partial uploads cleaned at start-up --------------------------------------------------


def test_a_restarted_server_removes_partial_uploads(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    leftovers = [tmp / "upload-999999999-crashed.upload", tmp / "upload-old.upload"]
    for path in leftovers:
        path.write_bytes(b"half an upload")
    live = LiveServer(tmp_path, env={"SYNTUMOR_EMBEDDED_WORKER": "false"}).start()
    try:
        assert list(tmp.iterdir()) == []
        assert "removed 2 partial upload(s) left in tmp/ by an earlier run" in live.log_tail()
    finally:
        live.close()
