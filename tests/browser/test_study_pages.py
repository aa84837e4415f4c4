"""An owner builds a study with the form, waits for it to be prepared and invites a reader."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.app.studies_support import (
    SHAPE_A,
    SHAPE_B,
    SPACING_A,
    SPACING_B,
    phantom_case,
    store_case,
)
from tests.browser.conftest import log_in, screenshot

T = 120_000  # ms: preparation runs synthesis jobs on a shared, slow machine


def test_owner_builds_a_study_with_the_form_and_invites_a_reader(browser, page, web_server):
    real = [store_case(web_server, *phantom_case(60 + i, SHAPE_A, SPACING_A, tumor_seed=i), f"Real {i}")
            for i in range(2)]  # fmt: skip
    healthy = [store_case(web_server, *phantom_case(70 + i, SHAPE_B, SPACING_B), f"Healthy {i}")
               for i in range(2)]  # fmt: skip
    username, password = web_server.create_user("researcher")
    log_in(page, web_server, username, password)
    page.goto(f"{web_server.url}/studies/new")
    page.fill("input[name=title]", "Form study")
    page.fill("textarea[name=description]", "Phantoms: two with tumors, two synthesized.")
    for image_id, _ in real:
        page.check(f'input[name=arm0_volumes][value="{image_id}"]')
    for image_id, _ in healthy:
        page.check(f'input[name=arm1_healthy][value="{image_id}"]')
    page.check("input[name=click_synthetic]")
    page.fill("input[name=repeats]", "1")
    warning = page.locator('#checks-list input[name=acknowledge][value="spacing_differs"]')
    expect(warning).to_be_visible(timeout=T)  # checked live: 2.5 mm against 3 mm
    expect(page.locator("#checks-list")).to_contain_text("display_grid")
    expect(page.locator("#checks-arms")).to_contain_text("2.5×2.5×2.5")  # arms side by side
    screenshot(page, "study-new")
    page.click("#new-study button[type=submit]")  # not acknowledged: refused, form kept
    expect(page.locator("[role=alert]")).to_contain_text("spacing_differs")
    expect(page.locator(f'input[name=arm0_volumes][value="{real[0][0]}"]')).to_be_checked()
    expect(page.locator("input[name=repeats]")).to_have_value("1")
    page.check('#checks-list input[name=acknowledge][value="spacing_differs"]')
    page.click("#new-study button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    expect(page.locator("#study-status")).to_have_text(
        "ready", timeout=T
    )  # the page refreshes itself
    expect(page.locator("table").last).to_contain_text("medium")  # the matched synthesis plans

    page.fill("input[name=label]", "Reader 1 (senior)")
    page.click("#invite-form button[type=submit]")
    link = page.locator("#invitation-url")
    expect(link).to_contain_text("/r/rd_", timeout=T)
    screenshot(page, "study-invited")

    reader_page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    reader_page.goto(link.inner_text())
    expect(reader_page.locator("h1")).to_have_text("Form study", timeout=T)
    expect(reader_page.locator("main")).to_contain_text("0 of 5 cases answered")  # 4 + 1 repeat
    reader_page.context.close()

    page.goto(f"{web_server.url}/studies/new")
    page.fill("input[name=title]", "No cases")
    page.click(
        "#new-study button[type=submit]"
    )  # no volume chosen: refused with the reason, form kept
    expect(page.locator("[role=alert]")).to_contain_text(
        "an arm of stored volumes lists them", timeout=T
    )
    expect(page.locator("input[name=title]")).to_have_value("No cases")
