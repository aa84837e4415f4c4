"""The OpenAPI document of the reader study (owners and readers) and the admin training API.

Every JSON operation under ``/api/v1/studies``, ``/api/v1/reader`` and ``/api/v1/admin`` names
its 2xx schema by ``$ref`` to an ``…Out`` model; a file, plot or stream names its media types;
every error status is documented with the one error body (``ErrorBody``, or a body extending
it, such as a refused design's with its ``checks``), never FastAPI's ``HTTPValidationError``;
and the rules enforced in code show in the schemas (arms, organs, profiles, tumor types,
architectures, model names, answers, features, plot and export names).
"""

from __future__ import annotations

import re

import pytest

from app.registry.catalog import _NAME_RULE as MODEL_NAME_RULE
from app.studies.schemas import EXPORTS, PLOTS
from app.studies.service import FEATURES
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES
from tests.app.openapi_support import component, load_spec, operations

OURS = re.compile(r"^/api/v1/(studies|reader|admin)\b")
ERROR_REF = "#/components/schemas/ErrorBody"
# Answers that are not JSON: (method, path) -> the media types of its 2xx answer.
NOT_JSON = {
    ("GET", "/api/v1/studies/{study_id}/plots/{name}.png"): {"image/png"},
    ("GET", "/api/v1/studies/{study_id}/export/{name}"): {"application/json", "text/csv"},
    ("GET", "/api/v1/reader/cases/{token}/image.nii"): {
        "application/octet-stream", "application/gzip"},
    ("GET", "/api/v1/reader/examples/{token}/image.nii"): {
        "application/octet-stream", "application/gzip"},
    ("GET", "/api/v1/admin/jobs/{job_id}/events"): {"text/event-stream"},
}  # fmt: skip
# Routes a session may call unsafely need the CSRF header; owner and admin routes a role.
NO_403 = {("GET", "/api/v1/reader"), ("GET", "/api/v1/reader/cases/{token}")} | {
    ("GET", "/api/v1/reader/cases/{token}/image.nii"),
    ("GET", "/api/v1/reader/examples/{token}/image.nii"),
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return load_spec(tmp_path_factory.mktemp("schema"))


def _operations(spec: dict):
    return operations(spec, OURS)


_schema = component


def _success(operation: dict) -> list[tuple[str, dict]]:
    found = [(status, r) for status, r in operation["responses"].items() if status[0] == "2"]
    assert found, operation.get("operationId")
    return found


def _is_error_body(spec: dict, schema: dict) -> bool:
    """ErrorBody itself, or a model that extends it (same required detail and code)."""
    if schema == {"$ref": ERROR_REF}:
        return True
    ref = schema.get("$ref")
    if not ref:
        return False
    body = _schema(spec, ref)
    return {"detail", "code"} <= set(body.get("required", [])) and set(
        _schema(spec, ERROR_REF)["properties"]
    ) <= set(body["properties"])


def test_our_operations_are_all_there(spec):
    operations = {(m, p) for m, p, _ in _operations(spec)}
    assert len(operations) >= 32
    assert operations >= set(NOT_JSON)


def test_every_json_operation_has_a_response_model(spec):
    for method, path, operation in _operations(spec):
        for status, success in _success(operation):
            content = success.get("content", {})
            if (method, path) in NOT_JSON:
                assert set(content) == NOT_JSON[method, path], (method, path, content)
                continue
            if status == "204":
                assert not content, (method, path)
                continue
            assert list(content) == ["application/json"], (method, path, content)
            ref = content["application/json"]["schema"].get("$ref")
            assert ref, (method, path, status)
            name = ref.rsplit("/", 1)[1]
            assert name.endswith("Out") or name.startswith("Page_"), (method, path, ref)
            assert _schema(spec, ref)["properties"], (method, path)


def test_every_error_status_is_documented_with_the_error_body(spec):
    for method, path, operation in _operations(spec):
        responses = operation["responses"]
        assert {"401", "429"} <= set(responses), (method, path)  # the auth dependencies
        if (method, path) not in NO_403:
            assert "403" in responses, (method, path)  # a role, or the CSRF header
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, (method, path)
        if operation.get("requestBody"):
            assert "400" in responses, (method, path)  # a body that cannot be parsed
        for status, response in responses.items():
            if status[0] in "45":
                content = response["content"]
                assert list(content) == ["application/json"], (method, path, status)
                schema = content["application/json"]["schema"]
                assert _is_error_body(spec, schema), (method, path, status, schema)
    assert not [
        (m, p)
        for m, p, operation in _operations(spec)
        if "HTTPValidationError" in str(operation["responses"])
    ]


def test_a_refused_design_documents_its_checks(spec):
    responses = spec["paths"]["/api/v1/studies"]["post"]["responses"]
    refused = _schema(spec, responses["409"]["content"]["application/json"]["schema"]["$ref"])
    assert "checks" in refused["required"]
    invalid = _schema(spec, responses["422"]["content"]["application/json"]["schema"]["$ref"])
    assert "checks" in invalid["properties"] and "errors" in invalid["properties"]
    check = _schema(spec, "#/components/schemas/DesignCheckOut")["properties"]
    assert check["level"]["enum"] == ["info", "warning", "error"]


def _body(spec: dict, method: str, path: str) -> dict:
    ref = spec["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]
    return _schema(spec, ref["schema"]["$ref"])["properties"]


def _param(spec: dict, method: str, path: str, name: str) -> dict:
    operation = spec["paths"][path][method.lower()]
    return next(p for p in operation["parameters"] if p["name"] == name)["schema"]


def test_study_rules_are_in_the_schema(spec):
    arm = _schema(spec, "#/components/schemas/ArmCreate")["properties"]
    assert arm["truth"]["enum"] == ["real", "synthetic"]
    assert arm["source"]["enum"] == ["volumes", "synthesize"]
    assert arm["organ"]["enum"] == list(ORGAN_PROFILES)
    assert arm["profile"]["enum"] == list(PROFILES)
    assert {"tiny", "small", "medium", "large", "cyst", "mix"} == set(
        arm["tumor_type"]["anyOf"][0]["enum"]
    )
    study = _body(spec, "POST", "/api/v1/studies")
    assert study["arms"]["minItems"] == study["arms"]["maxItems"] == 2
    assert _param(spec, "GET", "/api/v1/studies/{study_id}/plots/{name}.png", "name")[
        "enum"
    ] == list(PLOTS)
    assert _param(spec, "GET", "/api/v1/studies/{study_id}/export/{name}", "name")["enum"] == list(
        EXPORTS
    )


def test_reader_rules_are_in_the_schema(spec):
    answer = _body(spec, "PUT", "/api/v1/reader/cases/{token}/answer")
    assert answer["answer"]["enum"] == ["real", "synthetic", "unsure"]
    assert answer["features"]["anyOf"][0]["items"]["enum"] == list(FEATURES)
    assert answer["confidence"]["anyOf"][0]["minimum"] == 1
    case = _schema(spec, "#/components/schemas/CaseViewOut")
    assert "truth" not in case["required"]  # a test case's JSON has no truth at all
    put = spec["paths"]["/api/v1/reader/cases/{token}/answer"]["put"]["responses"]
    assert {"200", "201", "409"} <= set(put)


def test_training_rules_are_in_the_schema(spec):
    training = _body(spec, "POST", "/api/v1/admin/training-jobs")
    assert training["arch"]["enum"] == list(ARCHITECTURES)
    assert training["syn_organ"]["enum"] == list(ORGAN_PROFILES)
    assert training["syn_profile"]["enum"] == list(PROFILES)
    assert training["model_name"]["anyOf"][0]["pattern"] == MODEL_NAME_RULE.pattern
    evaluation = _body(spec, "POST", "/api/v1/admin/evaluation-jobs")
    assert evaluation["model"]["pattern"] == MODEL_NAME_RULE.pattern
    assert evaluation["mode"]["enum"] == ["fast", "parity"]
    kind = _param(spec, "GET", "/api/v1/admin/jobs", "kind")
    assert kind["anyOf"][0]["enum"] == ["train", "evaluate"]
    events = spec["paths"]["/api/v1/admin/jobs/{job_id}/events"]["get"]["responses"]["200"]
    event = events["content"]["text/event-stream"]["schema"]
    assert event["properties"]["event"]["enum"] == ["state", "points", "end"]
