"""Accounts (issue 17, items 5 and 8): sessions kept on the server and ended by logout, a
password change and a deactivation; account management in the API, the pages and the CLI; the
password policy; security headers; Secure cookies behind a trusted HTTPS proxy.

The server of this module believes ``X-Forwarded-Proto`` from 127.0.0.1 (a trusted proxy).
"""

from __future__ import annotations

import base64
import re
from contextlib import closing

import pytest
from typer.testing import CliRunner

from app.accounts.sessions import CONTENT_SECURITY_POLICY
from app.cli import app as cli
from app.cli.server import register
from tests.app.admin_support import admin_token, bearer
from tests.app.api_support import assert_error
from tests.live_server import LiveServer

runner = CliRunner()
register(cli)
STRONG = "violet trombone cactus 42"
WEAK_DETAIL = (
    "password is too easy to guess: This is a top-100 common password. Add another word or "
    "two. Uncommon words are better."
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SYNTUMOR_EMBEDDED_WORKER": "false", "SYNTUMOR_TRUSTED_PROXIES": "127.0.0.1"}
    live = LiveServer(tmp_path_factory.mktemp("accounts"), env=env).start()
    yield live
    live.close()


@pytest.fixture(scope="module")
def admin(server):
    with bearer(server, admin_token(server)) as client:
        yield client


def _cookie(client) -> str:
    return client.cookies["syntumor_session"]


def _with_cookie(server, cookie: str):
    return server.client(cookies={"syntumor_session": cookie})


def _user_id(admin, username: str) -> int:
    users = admin.get("/api/v1/users", params={"limit": 200}).json()["items"]
    return next(u["id"] for u in users if u["username"] == username)


def test_the_cookie_is_an_opaque_token(server):
    with closing(server.login(*server.create_user())) as client:
        cookie = _cookie(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie), cookie
    decoded = base64.urlsafe_b64decode(cookie + "=")
    assert b"user_id" not in decoded and b"csrf" not in decoded


def test_logout_ends_the_session_for_a_saved_cookie(server):
    with closing(server.login(*server.create_user())) as client:
        saved = _cookie(client)
        assert client.post("/api/v1/auth/logout").status_code == 200
    with closing(_with_cookie(server, saved)) as replay:
        assert_error(replay.get("/api/v1/auth/me"), 401)
        assert replay.get("/volumes", follow_redirects=False).status_code == 303


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(server):
    name, password = server.create_user()
    with (
        closing(server.login(name, password)) as here,
        closing(server.login(name, password)) as there,
    ):
        answer = here.post("/api/v1/auth/password",
                           json={"current_password": password, "new_password": STRONG})  # fmt: skip
        assert answer.status_code == 200, answer.text
        here.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        assert here.get("/api/v1/auth/me").json()["user"]["username"] == name
        assert_error(there.get("/api/v1/auth/me"), 401)
    with server.client() as anonymous:
        old = anonymous.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert_error(old, 401, "wrong user name or password")
    server.login(name, STRONG).close()


def test_a_wrong_current_password_or_a_weak_new_one_is_refused(server):
    name, password = server.create_user("reader")
    with closing(server.login(name, password)) as client:
        wrong = client.post("/api/v1/auth/password",
                            json={"current_password": "nope", "new_password": STRONG})  # fmt: skip
        assert_error(wrong, 403, "current_password is wrong")
        weak = client.post("/api/v1/auth/password",
                           json={"current_password": password, "new_password": "1234567890"})  # fmt: skip
        assert_error(weak, 422, WEAK_DETAIL)


@pytest.mark.parametrize("weak", ["1234567890", "password1234", "qwertyuiop", "aaaaaaaaaaaa"])
def test_common_and_trivial_passwords_are_refused(admin, weak):
    answer = admin.post("/api/v1/users", json={"username": "someone.new", "password": weak})
    assert answer.status_code == 422 and answer.json()["detail"].startswith(
        "password is too easy to guess"
    )


def test_deactivation_ends_sessions_and_tokens_until_activated(server, admin):
    name, password = server.create_user()
    session_client = server.login(name, password)
    token = session_client.post("/api/v1/auth/tokens", json={"name": "t"}).json()["token"]
    user_id = _user_id(admin, name)
    answer = admin.post(f"/api/v1/users/{user_id}/deactivate")
    assert answer.json() == {"id": user_id, "username": name, "role": "researcher",
                             "is_active": False}  # fmt: skip
    with closing(session_client), closing(bearer(server, token)) as token_client:
        assert_error(session_client.get("/api/v1/auth/me"), 401)
        assert_error(token_client.get("/api/v1/auth/me"), 401, "invalid or revoked API token")
        with server.client() as anonymous:
            login = anonymous.post(
                "/api/v1/auth/login", json={"username": name, "password": password}
            )
            assert_error(login, 401, "wrong user name or password")
        assert admin.post(f"/api/v1/users/{user_id}/activate").json()["is_active"] is True
        assert token_client.get("/api/v1/auth/me").status_code == 200
        assert_error(session_client.get("/api/v1/auth/me"), 401)  # ended, not suspended


def test_admins_set_passwords_and_revoke_tokens(server, admin):
    name, password = server.create_user("reader")
    client = server.login(name, password)
    token = client.post("/api/v1/auth/tokens", json={"name": "t"}).json()["token"]
    user_id = _user_id(admin, name)
    assert (
        admin.post(f"/api/v1/users/{user_id}/password", json={"password": STRONG}).status_code
        == 200
    )
    assert_error(client.get("/api/v1/auth/me"), 401)
    revoked = admin.delete(f"/api/v1/users/{user_id}/tokens").json()
    assert revoked["revoked"] == 1
    with closing(client), closing(bearer(server, token)) as token_client:
        assert_error(token_client.get("/api/v1/auth/me"), 401, "invalid or revoked API token")
    weak = admin.post(f"/api/v1/users/{user_id}/password", json={"password": "1234567890"})
    assert_error(weak, 422, WEAK_DETAIL)


def test_an_admin_cannot_deactivate_themselves(admin):
    me = admin.get("/api/v1/auth/me").json()["user"]
    answer = admin.post(f"/api/v1/users/{me['id']}/deactivate")
    assert_error(answer, 409, "you cannot deactivate your own account: ask another admin")


def test_the_cli_manages_users(server):
    name, password = server.create_user()
    client = server.login(name, password)
    assert client.post("/api/v1/auth/tokens", json={"name": "t"}).status_code == 201
    data_dir = ["--data-dir", str(server.data_dir)]
    listed = runner.invoke(cli, ["users", "list", *data_dir])
    assert listed.exit_code == 0 and re.search(rf"{name}\s+researcher\s+yes\s+1", listed.output)
    result = runner.invoke(cli, ["users", "deactivate", name, *data_dir])
    assert result.output.strip() == f"deactivated {name!r}; their sessions ended"
    with closing(client):
        assert_error(client.get("/api/v1/auth/me"), 401)
    assert runner.invoke(cli, ["users", "activate", name, *data_dir]).exit_code == 0
    result = runner.invoke(cli, ["users", "revoke-tokens", name, *data_dir])
    assert result.output.strip() == f"revoked 1 API token(s) of {name!r}"
    result = runner.invoke(cli, ["users", "set-password", name, "--password", STRONG, *data_dir])
    assert result.output.strip() == f"password of {name!r} set; their sessions ended"
    server.login(name, STRONG).close()
    weak = runner.invoke(
        cli, ["users", "set-password", name, "--password", "1234567890", *data_dir]
    )
    assert weak.exit_code == 2 and weak.output.strip() == f"error: {WEAK_DETAIL}"
    nobody = runner.invoke(cli, ["users", "deactivate", "nobody.here", *data_dir])
    assert nobody.exit_code == 2 and nobody.output.strip() == "error: no user 'nobody.here'"


def test_the_account_and_users_pages(server):
    name, password = server.create_user()
    with closing(server.login(name, password)) as client:
        page = client.get("/account")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        weak = client.post("/account/password", data={"current_password": password,
                           "new_password": "1234567890", "csrf_token": csrf})  # fmt: skip
        assert weak.status_code == 422 and "too easy to guess" in weak.text
        done = client.post("/account/password", data={"current_password": password,
                           "new_password": STRONG, "csrf_token": csrf}, follow_redirects=True)  # fmt: skip
        assert done.status_code == 200 and "Password changed." in done.text  # after the redirect
        assert client.get("/api/v1/auth/me").status_code == 200
    admin_name, admin_password = server.create_user("admin")
    with closing(server.login(admin_name, admin_password)) as admin_page:
        page = admin_page.get("/admin/users")
        assert page.status_code == 200 and f'data-user="{name}"' in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        user_id = re.search(rf'data-user="{re.escape(name)}".*?/admin/users/(\d+)/', page.text,
                            re.S).group(1)  # fmt: skip
        done = admin_page.post(f"/admin/users/{user_id}/deactivate", data={"csrf_token": csrf},
                               follow_redirects=True)  # fmt: skip
        assert "Account deactivated" in done.text
    with server.client() as anonymous:
        login = anonymous.post("/api/v1/auth/login", json={"username": name, "password": STRONG})
        assert_error(login, 401)


# --- 8. headers and cookies ------------------------------------------------------------------


def test_html_pages_carry_the_security_headers(server):
    with server.client() as client:
        page = client.get("/login")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"


def test_api_answers_carry_nosniff_and_frame_protection(server):
    with server.client() as client:
        answer = client.get("/api/v1/auth/me")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"


def test_the_cookie_is_secure_behind_a_trusted_https_proxy(server):
    name, password = server.create_user()
    body = {"username": name, "password": password}
    with server.client() as client:
        plain = client.post("/api/v1/auth/login", json=body)
        proxied = client.post("/api/v1/auth/login", json=body,
                              headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    assert "secure" not in plain.headers["set-cookie"].lower()
    cookie = proxied.headers["set-cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert proxied.headers["strict-transport-security"] == "max-age=31536000"


def test_a_visitors_session_lives_a_day_and_a_signed_in_one_fourteen(server):
    name, password = server.create_user()
    with server.client() as client:
        form = client.get("/login")
        assert "Max-Age=86400;" in form.headers["set-cookie"]
        visitor = _cookie(client)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = client.post("/login", data={"username": name, "password": password,
                                                "csrf_token": csrf}, follow_redirects=False)  # fmt: skip
        assert signed_in.status_code == 303
        assert f"Max-Age={14 * 24 * 3600};" in signed_in.headers["set-cookie"]
        assert _cookie(client) != visitor  # a new token at login: no session fixation
    with closing(_with_cookie(server, visitor)) as planted:
        assert_error(planted.get("/api/v1/auth/me"), 401)
