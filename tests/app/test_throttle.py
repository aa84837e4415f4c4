"""Throttled guesses (issue 17, item 2): failed logins per account and per address, wrong API
and reader tokens per address; 429 with Retry-After; failures in the audit log.

The server of this module gives 3 free failures per account and 6 per address, then waits 60 s
(doubling); it trusts 127.0.0.1 as a proxy, so each test plays another client address through
``X-Forwarded-For``.
"""

from __future__ import annotations

import re

import pytest

from app.accounts.throttle import Backoff
from tests.app.api_support import assert_error
from tests.live_server import LiveServer

LOGIN = "/api/v1/auth/login"
TOO_MANY = r"too many failed {} from this address or for this account: try again in (\d+) s"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SYNTUMOR_EMBEDDED_WORKER": "false", "SYNTUMOR_TRUSTED_PROXIES": "127.0.0.1",
           "SYNTUMOR_LOGIN_ATTEMPTS": "3", "SYNTUMOR_LOGIN_ATTEMPTS_PER_ADDRESS": "6",
           "SYNTUMOR_LOGIN_BACKOFF_S": "60"}  # fmt: skip
    live = LiveServer(tmp_path_factory.mktemp("throttle"), env=env).start()
    yield live
    live.close()


def _client(server, address: str):
    return server.client(headers={"X-Forwarded-For": address})


def _assert_throttled(answer, what: str) -> None:
    assert answer.status_code == 429, answer.text
    seconds = re.fullmatch(TOO_MANY.format(what), answer.json()["detail"])
    assert seconds and 1 <= int(seconds.group(1)) <= 60, answer.json()["detail"]
    assert answer.headers["retry-after"] == seconds.group(1)


def test_an_account_waits_after_its_free_failures_even_with_the_right_password(server):
    name, password = server.create_user()
    with _client(server, "10.0.0.1") as client, _client(server, "10.0.0.2") as elsewhere:
        for _ in range(3):
            wrong = client.post(LOGIN, json={"username": name, "password": "wrong guess"})
            assert_error(wrong, 401, "wrong user name or password")
        _assert_throttled(client.post(LOGIN, json={"username": name, "password": password}),
                          "logins")  # fmt: skip
        _assert_throttled(elsewhere.post(LOGIN, json={"username": name, "password": password}),
                          "logins")  # fmt: skip
    assert f"failed login for {name!r} from 10.0.0.1 (3 in a row)" in server.log_tail(20000)


def test_an_address_waits_after_guessing_many_accounts(server):
    name, password = server.create_user()
    with _client(server, "10.0.0.3") as client:
        for index in range(6):
            guess = client.post(LOGIN, json={"username": f"guess{index}", "password": "x" * 10})
            assert guess.status_code == 401
        _assert_throttled(client.post(LOGIN, json={"username": name, "password": password}),
                          "logins")  # fmt: skip
    with _client(server, "10.0.0.4") as other:
        assert other.post(LOGIN, json={"username": name, "password": password}).status_code == 200


def test_the_login_page_is_throttled_too(server):
    name, password = server.create_user()
    with _client(server, "10.0.0.5") as client:
        page = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        form = {"username": name, "password": "wrong guess", "csrf_token": csrf}
        for _ in range(3):
            assert client.post("/login", data=form).status_code == 401
        answer = client.post("/login", data={**form, "password": password})
    assert answer.status_code == 429 and "Too many failed logins" in answer.text
    assert 1 <= int(answer.headers["retry-after"]) <= 60


def test_api_token_guesses_are_throttled_per_address(server):
    token_client = server.token_client()
    token = token_client.headers["authorization"]
    with _client(server, "10.0.0.6") as client:
        for index in range(6):
            wrong = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer st_{index}"})
            assert_error(wrong, 401, "invalid or revoked API token")
        _assert_throttled(client.get("/api/v1/auth/me", headers={"Authorization": token}),
                          "tokens")  # fmt: skip
    assert "wrong API token from 10.0.0.6 (6 in a row)" in server.log_tail(20000)
    assert token_client.get("/api/v1/auth/me").status_code == 200  # another address
    token_client.close()


def test_reader_token_guesses_are_throttled_per_address(server):
    with _client(server, "10.0.0.7") as client:
        for index in range(3):
            wrong = client.get("/api/v1/reader", headers={"Authorization": f"Bearer rd_{index}"})
            assert_error(wrong, 401, "invalid or withdrawn reader token")
        for index in range(3):
            assert client.get(f"/r/rd_guess{index}").status_code == 404
        _assert_throttled(client.get("/api/v1/reader", headers={"Authorization": "Bearer rd_x"}),
                          "tokens")  # fmt: skip
        page = client.get("/r/rd_another", headers={"Accept": "text/html"})
        assert page.status_code == 429 and "Retry-After" in page.headers


def test_the_wait_doubles_with_every_failure_past_the_free_ones(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("app.accounts.throttle.time.monotonic", lambda: now[0])
    backoff = Backoff(free=2, first_wait_s=10, max_wait_s=35)
    waits = []
    for _ in range(5):
        backoff.fail("alice")
        waits.append(backoff.wait_s("alice"))
    assert waits == [0, 10, 20, 35, 35]  # the 3rd try waits 10 s, then 20 s, ... (capped)
    now[0] += 35
    assert backoff.wait_s("alice") == 0
    backoff.forget("alice")
    backoff.fail("alice")
    assert backoff.wait_s("alice") == 0
