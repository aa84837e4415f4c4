"""``/api/v1/auth`` and ``/api/v1/users`` against a real server: sessions, CSRF, tokens, roles."""

from __future__ import annotations

from tests.app.api_support import assert_error

LOGIN_FIRST = "log in first (session cookie or 'Authorization: Bearer <token>')"
CSRF_DETAIL = "CSRF token missing or wrong: reload the page and submit the form again"


def test_login_me_logout_with_a_session(server):
    name, password = server.create_user("researcher")
    client = server.client()
    answer = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"]["username"] == name and body["user"]["role"] == "researcher"
    assert len(body["csrf_token"]) >= 32
    assert "syntumor_session" in client.cookies

    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["user"]["username"] == name
    assert me.json()["csrf_token"] == body["csrf_token"]

    assert_error(client.post("/api/v1/auth/logout"), 403, CSRF_DETAIL)
    answer = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert_error(client.get("/api/v1/auth/me"), 401, LOGIN_FIRST)


def test_login_refuses_wrong_passwords_and_bad_bodies(server):
    name, password = server.create_user("reader")
    client = server.client()
    wrong = client.post("/api/v1/auth/login", json={"username": name, "password": password + "x"})
    assert_error(wrong, 401, "wrong user name or password")
    nobody = client.post("/api/v1/auth/login", json={"username": "nobody-here", "password": "x"})
    assert_error(nobody, 401, "wrong user name or password")
    body = assert_error(client.post("/api/v1/auth/login", json={"username": name}), 422)
    assert "password" in body["detail"] and body["errors"][0]["loc"][-1] == "password"
    assert_error(client.post("/api/v1/auth/login", content=b"{not json"), 422)


def test_unauthenticated_and_bad_token_calls_get_401(server):
    client = server.client()
    for path in ("/api/v1/auth/me", "/api/v1/auth/tokens", "/api/v1/users", "/api/v1/volumes"):
        assert_error(client.get(path), 401, LOGIN_FIRST)
    bad = server.client(headers={"Authorization": "Bearer st_not-a-real-token"})
    assert_error(bad.get("/api/v1/auth/me"), 401, "invalid or revoked API token")


def test_tokens_create_list_use_revoke(server):
    name, password = server.create_user("researcher")
    session_client = server.login(name, password)
    created = [
        session_client.post("/api/v1/auth/tokens", json={"name": f"script {i}"}) for i in range(3)
    ]
    assert [c.status_code for c in created] == [201, 201, 201]
    tokens = [c.json() for c in created]
    assert all(t["token"].startswith("st_") for t in tokens)

    listed = session_client.get("/api/v1/auth/tokens", params={"limit": 2, "offset": 1}).json()
    assert listed["total"] == 3 and listed["limit"] == 2 and listed["offset"] == 1
    assert [t["name"] for t in listed["items"]] == ["script 1", "script 2"]
    assert all("token" not in t for t in listed["items"])  # shown once, never listed

    program = server.client(headers={"Authorization": f"Bearer {tokens[0]['token']}"})
    assert program.get("/api/v1/auth/me").json()["user"]["username"] == name
    # Bearer calls need no CSRF token: no cookie is involved.
    assert program.post("/api/v1/auth/tokens", json={"name": "from a token"}).status_code == 201

    assert session_client.delete(f"/api/v1/auth/tokens/{tokens[0]['id']}").status_code == 204
    assert_error(program.get("/api/v1/auth/me"), 401, "invalid or revoked API token")
    again = session_client.delete(f"/api/v1/auth/tokens/{tokens[0]['id']}")
    assert_error(again, 404, f"token {tokens[0]['id']} not found")


def test_tokens_need_csrf_with_a_cookie_and_stay_private(server):
    owner = server.login(*server.create_user("researcher"))
    without_csrf = server.client(cookies=owner.cookies)
    assert_error(without_csrf.post("/api/v1/auth/tokens", json={"name": "x"}), 403, CSRF_DETAIL)
    wrong_csrf = server.client(cookies=owner.cookies, headers={"X-CSRF-Token": "guess"})
    assert_error(wrong_csrf.post("/api/v1/auth/tokens", json={"name": "x"}), 403, CSRF_DETAIL)

    token_id = owner.post("/api/v1/auth/tokens", json={"name": "mine"}).json()["id"]
    other = server.token_client("researcher")
    assert_error(
        other.delete(f"/api/v1/auth/tokens/{token_id}"), 404, f"token {token_id} not found"
    )
    assert token_id not in [t["id"] for t in other.get("/api/v1/auth/tokens").json()["items"]]
    bad_name = owner.post("/api/v1/auth/tokens", json={"name": ""})
    assert_error(bad_name, 422, contains="name")


def test_users_are_listed_and_created_by_admins_only(server):
    admin = server.token_client("admin")
    researcher = server.token_client("researcher")
    reader = server.token_client("reader")

    answer = admin.post(
        "/api/v1/users",
        json={"username": "New.Person", "password": "long enough pw", "role": "reader"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["username"] == "new.person" and answer.json()["role"] == "reader"
    assert server.login("new.person", "long enough pw").get("/api/v1/auth/me").status_code == 200

    listed = admin.get("/api/v1/users", params={"limit": 200}).json()
    assert "new.person" in [u["username"] for u in listed["items"]]
    assert listed["total"] == len(listed["items"])
    assert all("password_hash" not in u for u in listed["items"])

    duplicate = admin.post(
        "/api/v1/users", json={"username": "new.person", "password": "long enough pw"}
    )
    assert_error(duplicate, 409, "user 'new.person' already exists")
    weak = admin.post("/api/v1/users", json={"username": "weakling", "password": "short"})
    assert_error(weak, 422, "password must have at least 10 characters")
    role = admin.post(
        "/api/v1/users", json={"username": "someone", "password": "long enough pw", "role": "god"}
    )
    assert_error(role, 422, "role must be one of admin, researcher, reader; got 'god'")
    bad_name = admin.post(
        "/api/v1/users", json={"username": "../root", "password": "long enough pw"}
    )
    assert_error(bad_name, 422, contains="user name must be 3-64 characters")

    for client in (researcher, reader):
        assert_error(client.get("/api/v1/users"), 403, "this needs the role admin")
        body = {"username": "sneaky", "password": "long enough pw", "role": "admin"}
        assert_error(client.post("/api/v1/users", json=body), 403, "this needs the role admin")
    assert_error(server.client().get("/api/v1/users"), 401, LOGIN_FIRST)
