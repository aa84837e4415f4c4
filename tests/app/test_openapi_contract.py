"""The OpenAPI document is the API's contract: schemathesis checks a live server against it.

For every JSON operation of ``/openapi.json`` schemathesis generates requests from the schema
(a fixed seed, a few examples per operation, so a run is short and repeatable) and sends them
to a real server, as an admin (who may call every route). Each response must:

- not be a server error (5xx);
- have a status that the operation documents (``responses``);
- have the content type documented for that status;
- match the documented schema of that status (the success model, or the one error body).

Routes that would end the test's own access (logout, password change, token revocation, user
deactivation) are left out: they are covered by tests of their own.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.live_server import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations that would take the test's own access away, or cannot run without a browser's
# session: not generated here (tests/app/test_api_auth.py, test_accounts.py cover them).
DESTRUCTIVE = (
    r"/api/v1/auth/logout$",
    r"/api/v1/auth/password$",
    r"/api/v1/auth/tokens/\{token_id\}$",
    r"/api/v1/users/\{user_id\}/(password|deactivate|tokens)$",
)
EXAMPLES = int(os.environ.get("SYNTUMOR_CONTRACT_EXAMPLES", "4"))
# While working on one feature: SYNTUMOR_CONTRACT_PATHS=^/api/v1/studies checks only its paths.
ONLY_PATHS = os.environ.get("SYNTUMOR_CONTRACT_PATHS")


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory) -> LiveServer:
    # No embedded worker or training supervisor: a valid random request queues a job (and the
    # contract is about the answer), it never starts a segmentation or a training run.
    server = LiveServer(
        tmp_path_factory.mktemp("contract"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_headers(contract_server) -> dict[str, str]:
    client = contract_server.token_client("admin")
    headers = {"Authorization": client.headers["Authorization"]}
    client.close()
    return headers


if not hasattr(pytest.Function, "_nodeid"):  # pytest 9.2 dropped it; schemathesis 4.32 reads it
    pytest.Function._nodeid = property(lambda self: self.nodeid, lambda self, value: None)


@pytest.fixture(scope="module")
def api_schema(contract_server):
    return schemathesis.openapi.from_url(f"{contract_server.url}/openapi.json")


# Filters go on the lazy schema: schemathesis replaces the filters of the fixture's schema.
schema = schemathesis.pytest.from_fixture("api_schema")
for path in DESTRUCTIVE:
    schema = schema.exclude(path_regex=path)
if ONLY_PATHS:
    schema = schema.include(path_regex=ONLY_PATHS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same requests every run
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(case, admin_headers):
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
