"""Who may see what: a reader sees only their own cases and answers, never truth or results.

Every route of the API (read from the live server's OpenAPI document) and every study page is
called as a reader (bearer token and browser session), as a reader with an account, and
anonymously.
"""

from __future__ import annotations

import re

import pytest

from tests.app.studies_support import invite, owner, readings_of, ready_study_without_images

PUBLIC = {("POST", "/api/v1/auth/login")}
ARMS = ("ARM-ALPHA", "ARM-BETA")
SECRETS = re.compile(r"truth|ARM-ALPHA|ARM-BETA|\barm\b|reader two|order_seed|case_id|volume", re.I)


@pytest.fixture(scope="module")
def setting(server):
    study_owner = owner(server)
    study_id = ready_study_without_images(server, study_owner.username, 3, 3, with_images=True,
                                          examples=1, repeats=1, click_synthetic=True,
                                          arm_names=ARMS)  # fmt: skip
    mine, mine_client = invite(server, study_owner, study_id, "reader one")
    theirs, theirs_client = invite(server, study_owner, study_id, "reader two")
    their_readings = readings_of(server, theirs["reader"]["id"])
    for reading in their_readings[:3]:
        answer = theirs_client.put(f"/api/v1/reader/cases/{reading['token']}/answer",
                                   json={"answer": "synthetic", "confidence": 5})  # fmt: skip
        assert answer.status_code == 201
    browser = server.client()
    assert browser.get(f"/r/{mine['token']}").status_code == 303
    browser.headers["X-CSRF-Token"] = _csrf(browser.get("/read", follow_redirects=True).text)
    return {
        "owner": study_owner, "study_id": study_id, "mine": mine, "theirs": theirs,
        "their_token": their_readings[0]["token"], "bearer": mine_client, "browser": browser,
        "anonymous": server.client(),
    }  # fmt: skip


def _csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _url(path: str, setting: dict) -> str:
    values = {"study_id": setting["study_id"], "reader_id": setting["theirs"]["reader"]["id"],
              "token": setting["their_token"]}  # fmt: skip

    def fill(match) -> str:
        name = match.group(1)
        if name == "name":
            return "answers.csv" if "/export/" in path else "confusion"
        return str(values.get(name, 1))

    return re.sub(r"\{(\w+)\}", fill, path)


def _operations(server) -> list[tuple[str, str]]:
    document = server.client().get("/openapi.json").json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in ("get", "post", "put", "delete", "patch")]  # fmt: skip


def test_a_reader_gets_nothing_outside_the_reader_api(server, setting):
    operations = _operations(server)
    assert ("GET", "/api/v1/studies/{study_id}/results") in operations
    checked = 0
    for method, path in operations:
        if (method, path) in PUBLIC or path.startswith("/api/v1/reader"):
            continue
        url = _url(path, setting)
        for who in ("bearer", "browser", "anonymous"):
            answer = setting[who].request(method, url, json={})
            assert answer.status_code in (401, 403), (
                who,
                method,
                url,
                answer.status_code,
                answer.text[:200],
            )
            assert set(answer.json()) == {"detail", "code"}, (who, method, url)
            checked += 1
    assert checked > 40


def test_a_readers_api_is_scoped_to_that_reader(server, setting):
    for who in ("bearer", "browser"):
        client = setting[who]
        overview = client.get("/api/v1/reader")
        assert overview.status_code == 200
        assert overview.json()["reader"]["label"] == "reader one"
        assert not SECRETS.search(overview.text), overview.text
        assert overview.json()["progress"]["answered"] == 0  # reader two's answers are not theirs
        their = setting["their_token"]
        for method, url in (("GET", f"/api/v1/reader/cases/{their}"),
                            ("GET", f"/api/v1/reader/cases/{their}/image.nii"),
                            ("PUT", f"/api/v1/reader/cases/{their}/answer")):  # fmt: skip
            answer = client.request(method, url, json={"answer": "real", "confidence": 1})
            assert answer.status_code == 404, (who, method, url)
            assert answer.json() == {"detail": "case not found", "code": "not_found"}
        own = overview.json()["readings"][0]["token"]
        view = client.get(f"/api/v1/reader/cases/{own}")
        assert view.status_code == 200 and not SECRETS.search(view.text)
        image = client.get(view.json()["image_url"])
        assert image.status_code == 200 and image.content[:4] == (348).to_bytes(4, "little")
        example = overview.json()["examples"][0]["image_url"]
        assert client.get(example).status_code == 200


def test_anonymous_and_other_tokens_get_nothing_from_the_reader_api(server, setting):
    own = setting["bearer"].get("/api/v1/reader").json()["readings"][0]["token"]
    urls = [
        "/api/v1/reader",
        f"/api/v1/reader/cases/{own}",
        f"/api/v1/reader/cases/{own}/image.nii",
    ]
    for url in urls:
        answer = setting["anonymous"].get(url)
        assert answer.status_code == 401
        assert answer.json()["detail"].startswith("open your invitation link first")
        forged = server.client(headers={"Authorization": "Bearer rd_not-a-real-token"}).get(url)
        assert (
            forged.status_code == 401
            and forged.json()["detail"] == "invalid or withdrawn reader token"
        )
    put = setting["anonymous"].put(f"/api/v1/reader/cases/{own}/answer", json={"answer": "real"})
    assert put.status_code == 401
    no_csrf = server.client(cookies=setting["browser"].cookies).put(
        f"/api/v1/reader/cases/{own}/answer", json={"answer": "real", "confidence": 3}
    )
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]


def test_study_pages_are_closed_to_readers(server, setting):
    study_id = setting["study_id"]
    username, password = server.create_user("reader")
    account = server.login(username, password)
    pages = ["/studies/new", f"/studies/{study_id}", f"/studies/{study_id}/results",
             f"/studies/{study_id}/report"]  # fmt: skip
    for url in pages:
        for client in (setting["browser"], setting["anonymous"], account):
            answer = client.get(url)
            assert answer.status_code in (303, 403), (url, answer.status_code)
            assert not SECRETS.search(answer.text), url
    assert account.get("/api/v1/studies").status_code == 403
    assert account.get(f"/api/v1/studies/{study_id}/results").status_code == 403
    their = setting["their_token"]
    assert setting["browser"].get(f"/read/c/{their}").status_code == 404
    assert setting["anonymous"].get("/read").status_code == 403


def test_withdrawn_and_replaced_links_stop_working(server, setting):
    study_owner, study_id = setting["owner"], setting["study_id"]
    invitation, reader = invite(server, study_owner, study_id, "short-lived reader")
    browser = server.client()
    browser.get(f"/r/{invitation['token']}")
    assert browser.get("/api/v1/reader").status_code == 200
    renewed = study_owner.client.post(
        f"/api/v1/studies/{study_id}/readers/{invitation['reader']['id']}/link"
    ).json()
    assert reader.get("/api/v1/reader").status_code == 401  # the old token
    assert browser.get("/api/v1/reader").status_code == 401  # the session opened with it
    fresh = server.client(headers={"Authorization": f"Bearer {renewed['token']}"})
    assert fresh.get("/api/v1/reader").status_code == 200
    withdrawn = study_owner.client.delete(
        f"/api/v1/studies/{study_id}/readers/{invitation['reader']['id']}"
    )
    assert withdrawn.status_code == 204
    assert fresh.get("/api/v1/reader").status_code == 401
    assert server.client().get(f"/r/{renewed['token']}").status_code == 404
