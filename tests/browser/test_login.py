"""Logging in and out in a real browser."""

from __future__ import annotations

from tests.browser.conftest import log_in, screenshot


def test_login_shows_the_user_and_logout_returns_to_login(page, web_server):
    username, password = web_server.create_user("researcher")
    page.goto(f"{web_server.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong user name or password."
    log_in(page, web_server, username, password)
    assert username in page.locator(".who").inner_text()
    screenshot(page, "home-logged-in")
    page.click("text=Log out")
    page.wait_for_url("**/login")
    assert page.locator("input[name=username]").is_visible()
