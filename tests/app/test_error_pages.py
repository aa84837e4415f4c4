"""Errors answer browsers with the error page and programs with JSON, from one handler."""

from __future__ import annotations

import pytest

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def researcher(server):
    username, password = server.create_user("researcher")
    client = server.login(username, password)
    yield client
    client.close()


def _is_error_page(answer, status: int) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert f"<h1>{status}</h1>" in answer.text
    assert '"detail"' not in answer.text  # no raw JSON in the page


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/studies/abc", 422, "study_id"),
        ("/studies/999999", 404, "study 999999 not found"),
        ("/no/such/page", 404, "Not Found"),
        ("/studies/999999/results", 404, "study 999999 not found"),
    ],
)
def test_browsers_get_an_error_page(researcher, path, status, says):
    answer = researcher.get(path, headers=HTML)
    _is_error_page(answer, status)
    assert says in answer.text


def test_anonymous_browsers_get_an_error_page_for_a_bad_address(server):
    with server.client() as client:
        _is_error_page(client.get("/studies/abc", headers=HTML), 422)
        _is_error_page(client.get("/nothing-here", headers=HTML), 404)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/v1/studies/abc", 422), ("/api/v1/studies/999999", 404), ("/api/v1/nothing", 404)],
)
def test_the_api_answers_json_even_to_a_browser(researcher, path, status):
    answer = researcher.get(path, headers=HTML)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["detail"]


def test_a_page_address_asked_for_json_answers_json(researcher):
    answer = researcher.get("/studies/abc", headers=JSON)
    assert answer.status_code == 422
    body = answer.json()
    assert "study_id" in body["detail"] and body["errors"][0]["loc"] == ["path", "study_id"]
    missing = researcher.get("/studies/999999", headers=JSON)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "study 999999 not found", "code": "not_found"}
