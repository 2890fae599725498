"""Security headers on every kind of page (finding 11) and huge path ids answering 404 (finding 8)."""

from __future__ import annotations

import pytest

from api.security_headers import HTML_CSP

HUGE = "99999999999999999999"


@pytest.mark.parametrize("path", [
    f"/admin/applications/{HUGE}", f"/admin/operators/{HUGE}", "/admin/applications/2147483648",
    "/admin/applications/0", "/admin/applications/-1",
])
def test_ids_outside_the_column_range_are_404_not_500(admin_client, path):
    page = admin_client.get(path, headers={"accept": "text/html"})
    assert page.status_code == 404, page.text[:500]
    assert "no such record" in page.text
    api = admin_client.get(path)
    assert api.status_code == 404 and api.json() == {"detail": "There is no such record: check the address."}


def test_forms_with_huge_ids_are_404_too(admin_client):
    from tests.support.admin import admin_csrf

    token = admin_csrf(admin_client)
    for path in (f"/admin/applications/{HUGE}/approve", f"/admin/clients/{HUGE}/disable",
                 f"/admin/models/iris/versions/{HUGE}/promote"):
        r = admin_client.post(path, data={"csrf_token": token}, headers={"accept": "text/html"})
        assert r.status_code == 404, (path, r.status_code)


def test_unauthenticated_huge_id_still_needs_a_session(anon_client):
    r = anon_client.get(f"/admin/applications/{HUGE}")
    assert r.status_code == 401


def test_admin_pages_cannot_be_framed_scripted_or_cached(admin_client):
    page = admin_client.get("/admin", headers={"accept": "text/html"})
    assert page.status_code == 200
    h = page.headers
    assert h["x-frame-options"] == "DENY"
    assert h["content-security-policy"] == HTML_CSP
    assert "frame-ancestors 'none'" in HTML_CSP and "script-src 'self';" in HTML_CSP
    assert "unsafe-inline" not in HTML_CSP.split("script-src", 1)[1].split(";", 1)[0]
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"
    assert h["cache-control"] == "no-store"
    # The templates carry no script the CSP would block (they would break silently in a browser).
    for path in ("/admin", "/admin/applications", "/admin/nodes", "/admin/models", "/admin/account",
                 "/admin/rewards", "/admin/clients", "/admin/audit"):
        text = admin_client.get(path, headers={"accept": "text/html"}).text.lower()
        assert "<script" not in text and "javascript:" not in text and " onclick=" not in text, path


def test_login_portal_and_api_answers_carry_headers(anon_client):
    login = anon_client.get("/admin/login")
    assert login.headers["cache-control"] == "no-store"
    assert login.headers["x-frame-options"] == "DENY"
    portal = anon_client.get("/portal/download/not-a-token")
    assert portal.headers["cache-control"] == "no-store"
    assert portal.headers["referrer-policy"] == "no-referrer"  # the route's stricter choice is kept
    assert "frame-ancestors 'none'" in portal.headers["content-security-policy"]
    api = anon_client.get("/healthz")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in api.headers
    assert "strict-transport-security" not in api.headers  # local/test: plain HTTP on loopback
