"""The OpenAPI document of accounts, volumes, jobs and processing: clients are generated from it.

Every JSON operation names its 2xx schema (a model, by ``$ref``); a file or stream names its
media type instead; every error status is documented with the one error body (``ErrorBody``),
never FastAPI's ``HTTPValidationError``; and the rules enforced in code show in the schemas
(user names, model names, organs, architectures, modes, the upload's ``?name=``).
"""

from __future__ import annotations

import re

import pytest

from app.accounts.auth import USERNAME_CHARS
from app.registry.catalog import _NAME_RULE as MODEL_NAME_RULE
from app.registry.catalog import TUMOR_KINDS
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES
from tests.app.openapi_support import component, load_spec, operations

OURS = re.compile(
    r"^/api/v1/(auth|users|volumes|jobs|segmentations|syntheses|synthesis-options|models)\b"
)
ERROR_REF = "#/components/schemas/ErrorBody"
# Answers that are not JSON: (method, path) -> the media types of its 2xx answer.
NOT_JSON = {
    ("GET", "/api/v1/volumes/{volume_id}/file"): {"application/gzip", "application/octet-stream"},
    ("GET", "/api/v1/jobs/{job_id}/events"): {"text/event-stream"},
    ("GET", "/api/v1/segmentations/{segmentation_id}/lesions.{fmt}"): {"application/json", "text/csv"},
    ("GET", "/api/v1/segmentations/{segmentation_id}/dicom-seg"): {"application/dicom"},
    ("GET", "/api/v1/syntheses/{synthesis_id}/manifest"): {"application/json"},
    ("POST", "/api/v1/syntheses/preview"): {"application/octet-stream"},
}  # fmt: skip


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return load_spec(tmp_path_factory.mktemp("schema"))


def _operations(spec: dict):
    return operations(spec, OURS)


_schema = component


def _success(operation: dict) -> tuple[str, dict]:
    found = [(status, r) for status, r in operation["responses"].items() if status[0] == "2"]
    assert found, operation.get("operationId")
    return found[0]


def test_our_operations_are_all_there(spec):
    operations = list(_operations(spec))
    assert len(operations) >= 34
    assert {(m, p) for m, p, _ in operations} >= set(NOT_JSON)


def test_every_json_operation_has_a_response_model(spec):
    for method, path, operation in _operations(spec):
        status, success = _success(operation)
        content = success.get("content", {})
        if (method, path) in NOT_JSON:
            assert set(content) == NOT_JSON[method, path], (method, path, content)
        elif status == "204":
            assert not content, (method, path)
        else:
            assert list(content) == ["application/json"], (method, path, content)
            ref = content["application/json"]["schema"].get("$ref")
            assert ref and ref.rsplit("/", 1)[1].endswith(("Out", "Out_")), (method, path, ref)
            assert _schema(spec, ref)["properties"], (method, path)


def test_every_error_status_is_documented_with_the_one_error_body(spec):
    for method, path, operation in _operations(spec):
        responses = operation["responses"]
        assert "401" in responses, (method, path)  # the auth dependencies, or a wrong password
        takes_input = operation.get("parameters") or operation.get("requestBody")
        if takes_input:
            assert "422" in responses, (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, (method, path)  # an unknown id (or one out of range)
        if operation.get("requestBody") and (method, path) != ("POST", "/api/v1/volumes"):
            assert "400" in responses, (method, path)  # a body that cannot be parsed
        for status, response in responses.items():
            if status[0] in "45":
                content = response["content"]
                assert list(content) == ["application/json"], (method, path, status)
                assert content["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                    method, path, status,
                )  # fmt: skip
    assert not [
        (m, p)
        for m, p, operation in _operations(spec)
        if "HTTPValidationError" in str(operation["responses"])
    ]


def test_the_error_body_is_what_the_server_sends(spec):
    body = _schema(spec, ERROR_REF)
    assert set(body["required"]) == {"detail", "code"}
    assert body["properties"]["detail"]["type"] == "string"


def _body_schema(spec: dict, method: str, path: str) -> dict:
    ref = spec["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]
    return _schema(spec, ref["schema"]["$ref"])["properties"]


def _param(spec: dict, method: str, path: str, name: str) -> dict:
    operation = spec["paths"][path][method.lower()]
    return next(p for p in operation["parameters"] if p["name"] == name)


def test_user_names_and_roles_are_in_the_schema(spec):
    user = _body_schema(spec, "POST", "/api/v1/users")
    pattern = re.compile(user["username"]["pattern"])
    for char in USERNAME_CHARS:
        assert pattern.fullmatch(char * 3) and pattern.fullmatch(char.upper() * 3), char
    for bad in ("ab", "a" * 65, "../root", "a b", "name/x", "námé", "x;y"):
        assert not pattern.fullmatch(bad), bad
    assert user["role"]["enum"] == ["admin", "researcher", "reader"]
    assert user["password"]["minLength"] == 10


def test_processing_rules_are_in_the_schema(spec):
    segmentation = _body_schema(spec, "POST", "/api/v1/segmentations")
    assert segmentation["model"]["pattern"] == MODEL_NAME_RULE.pattern
    assert segmentation["mode"]["enum"] == ["fast", "parity"]
    assert (
        segmentation["overlap"]["minimum"] == 0 and segmentation["overlap"]["exclusiveMaximum"] == 1
    )
    synthesis = _body_schema(spec, "POST", "/api/v1/syntheses")
    assert synthesis["organ"]["enum"] == list(ORGAN_PROFILES)
    assert synthesis["profile"]["enum"] == list(PROFILES)
    assert {"tiny", "small", "medium", "large", "cyst", "mix"} <= set(
        synthesis["tumor_type"]["enum"]
    )
    models = _schema(spec, "#/components/schemas/ModelOut")["properties"]
    assert models["arch"]["enum"] == list(ARCHITECTURES)
    assert models["tumors"]["enum"] == list(TUMOR_KINDS)


def test_upload_parameters_and_body_are_described(spec):
    name = _param(spec, "POST", "/api/v1/volumes", "name")["schema"]
    assert name["anyOf"][0]["minLength"] == 1 and name["anyOf"][0]["maxLength"] == 255
    kind = _param(spec, "POST", "/api/v1/volumes", "kind")["schema"]
    assert kind["enum"] == ["image", "label"]
    body = spec["paths"]["/api/v1/volumes"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/octet-stream", "multipart/form-data"}
    responses = spec["paths"]["/api/v1/volumes"]["post"]["responses"]
    assert {"200", "201", "413", "415"} <= set(responses)  # a duplicate answers 200
    jobs = _param(spec, "GET", "/api/v1/jobs", "status")["schema"]
    assert jobs["anyOf"][0]["enum"] == ["queued", "running", "succeeded", "failed", "cancelled"]
