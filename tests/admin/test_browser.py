"""The admin journey in a real browser (Debian chromium via Playwright) against uvicorn.

Sign in, open a pending application, try to reject it without a reason, approve it, let the
onboarding pipeline's provisioning run, and watch the page show it provisioned. Screenshots of
each page are kept in test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import ApplicationStatus, OperatorApplication
from noderr_core.settings import Settings
from noderr_core.telemetry import record_heartbeat
from noderr_core.timeutil import utcnow
from tests.support.node import heartbeat_in
from tests.support.factories import make_node
from tests.support.admin import ADMIN_EMAIL, ADMIN_PASSWORD, make_pending_application, provision

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"admin-{name}.png"), full_page=True)


def test_admin_approves_an_application_and_sees_it_provisioned(sqlite_url, tmp_path,
                                                               api_server_factory, browser_page):
    settings = Settings(env="test", database_url=sqlite_url, state_dir=tmp_path / "state")
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    with factory() as s:
        app_id = make_pending_application(s, full_name="Ada Lovelace", email="ada@example.com")
        other_id = make_pending_application(s, full_name="Grace Hopper")
        s.commit()
    server = api_server_factory(sqlite_url, env={
        "NODERR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "NODERR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    })
    page = browser_page

    # An unauthenticated visit lands on the sign-in form, which brings the admin back.
    page.goto(f"{server.url}/admin/applications/{app_id}")
    assert "/admin/login" in page.url
    shot(page, "01-login")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "Wrong e-mail or password."
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/admin/applications/{app_id}")

    page.click("text=Applications")
    page.wait_for_url("**/admin/applications")
    assert page.locator("#applications tbody tr").count() == 2
    page.select_option("select[name=status]", "pending_review")
    page.fill("input[name=q]", "ada@")
    page.click("text=Filter")
    assert page.locator("#applications tbody tr").count() == 1
    shot(page, "02-applications")
    page.click("text=Ada Lovelace")
    page.wait_for_url(f"**/admin/applications/{app_id}")
    shot(page, "03-application-pending")

    # Reject needs a reason: the browser will not submit the empty form...
    page.click("#reject")
    assert page.url.endswith(f"/admin/applications/{app_id}")
    assert "pending review" in page.locator("#application-status").inner_text()
    # ...and the server refuses it too when the browser check is bypassed.
    page.eval_on_selector("#reason", "el => el.removeAttribute('required')")
    page.click("#reject")
    assert "a rejection needs a reason" in page.content()
    page.go_back()
    page.reload()
    assert "pending review" in page.locator("#application-status").inner_text()

    page.click("#approve")
    page.wait_for_url(f"**/admin/applications/{app_id}")
    assert "approved" in page.locator("#application-status").inner_text()
    assert "onboarding pipeline now carries the decision out" in page.content()
    assert page.locator("#approve").count() == 0  # no second approval button

    outcome = provision(factory, settings, app_id)
    page.reload()
    assert "provisioned" in page.locator("#application-status").inner_text()
    assert outcome.node_id in page.locator("#provisioning").inner_text()
    shot(page, "04-application-provisioned")

    page.click(f"#provisioning a:has-text('{outcome.node_id}')")
    page.wait_for_url(f"**/admin/nodes/{outcome.node_id}")
    assert "provisioned" in page.locator("#node-status").inner_text()
    shot(page, "05-node")

    # A node that has been reporting for the last hour, so the overview's charts have data.
    with factory() as s:
        node, _key = make_node(s, status="provisioned")
        for m in range(60, 0, -1):
            record_heartbeat(s, node, heartbeat_in(latency_p50_ms=20 + m % 7, latency_p95_ms=55 + m % 11),
                             now=utcnow() - timedelta(minutes=m))
        s.commit()
    page.click("header >> text=Network")
    page.wait_for_url("**/admin")
    page.click("text=1h")
    assert page.locator("#chart-throughput").count() == 1
    assert int(page.locator("#chart-latency").get_attribute("data-points")) >= 20
    assert page.locator("#nodes-online").inner_text() == "1"
    shot(page, "06-overview")

    page.click("text=Audit log")
    audit = page.locator("#audit").inner_text()
    assert "application.approved" in audit and "admin.login" in audit
    shot(page, "07-audit")

    page.click("text=Sign out")
    page.wait_for_url("**/admin/login")
    page.goto(f"{server.url}/admin")
    assert "/admin/login" in page.url

    with factory() as s:
        assert s.get(OperatorApplication, app_id).status == ApplicationStatus.PROVISIONED
        assert s.get(OperatorApplication, other_id).status == ApplicationStatus.PENDING_REVIEW
    engine.dispose()
