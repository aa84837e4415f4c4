"""/docs (Swagger UI) and /redoc (ReDoc) render the API offline: every request stays on the server."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot


def _watch(page) -> tuple[list[str], list[str]]:
    hosts: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: hosts.append(urlparse(request.url).netloc)
            if request.url.startswith("http") else None)  # fmt: skip
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    return hosts, problems


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_render_without_another_host(page, web_server, path):
    hosts, problems = _watch(page)
    page.goto(f"{web_server.url}{path}")
    if path == "/docs":
        operations = page.locator(".opblock")
        expect(operations.first).to_be_visible(timeout=30_000)
        assert operations.count() > 20
        expect(
            page.locator(".opblock-summary-path", has_text="/api/v1/volumes").first
        ).to_be_visible()
    else:
        expect(page.locator("h1", has_text="SynTumor").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("/api/v1/volumes").first).to_be_attached()
    screenshot(page, f"api{path.replace('/', '-')}")
    own = urlparse(web_server.url).netloc
    assert set(hosts) == {own}, sorted(set(hosts))
    assert not problems, problems
