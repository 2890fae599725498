"""Admin sign-in: sessions, CSRF, rate limit, and that no admin route answers without a session."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.deps import SESSION_COOKIE
from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import AdminSession, AuditLogEntry, LoginAttempt
from noderr_core.security import sha256_hex
from noderr_core.settings import Settings
from tests.support.admin import ADMIN_EMAIL, ADMIN_PASSWORD, admin_csrf, admin_login

PUBLIC_ADMIN_PATHS = {"/admin/login"}


def admin_routes(app):
    """Every (method, concrete path) under /admin, found from the app itself: new pages are covered."""
    found = []
    for rc in iter_route_contexts(app.routes):
        path = rc.path or ""
        if not path.startswith("/admin") or path in PUBLIC_ADMIN_PATHS:
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(rc.methods or ()):
            if method != "HEAD":
                found.append((method, concrete))
    return found


def db_rows(settings: Settings, model, *where):
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as s:
            return s.scalars(select(model).where(*where)).all()
    finally:
        engine.dispose()


def test_every_admin_route_refuses_requests_without_a_session(anon_client, admin_app):
    routes = admin_routes(admin_app)
    assert ("GET", "/admin") in routes and ("POST", "/admin/logout") in routes
    for method, path in routes:
        browser = anon_client.request(method, path, headers={"accept": "text/html"},
                                      follow_redirects=False)
        assert browser.status_code == 303, (method, path, browser.status_code)
        assert browser.headers["location"].startswith("/admin/login"), (method, path)
        api = anon_client.request(method, path, headers={"accept": "application/json"},
                                  follow_redirects=False)
        assert api.status_code == 401, (method, path, api.status_code)
        assert "sign in" in api.json()["detail"]


def test_every_admin_form_refuses_a_bad_or_missing_csrf_token(admin_client, admin_app):
    posts = [(m, p) for m, p in admin_routes(admin_app) if m == "POST"]
    assert posts
    for method, path in posts:
        for data in ({}, {"csrf_token": "forged"}):
            r = admin_client.request(method, path, data=data, headers={"accept": "text/html"},
                                     follow_redirects=False)
            assert r.status_code == 403, (path, data, r.status_code)
            assert "CSRF" in r.text
    # The session survived all of that: the forged logouts did not sign the admin out.
    assert admin_client.get("/admin/audit", follow_redirects=False).status_code == 200


def test_login_sets_a_hardened_cookie_and_stores_only_the_token_hash(anon_client, admin_settings):
    r = admin_login(anon_client)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    token = anon_client.cookies[SESSION_COOKIE]
    stored = db_rows(admin_settings, AdminSession)
    assert [s.token_hash for s in stored] == [sha256_hex(token)]
    assert all(token not in (s.token_hash, s.csrf_token) for s in stored)
    page = anon_client.get("/admin/audit")
    assert page.status_code == 200 and ADMIN_EMAIL in page.text
    assert "admin.login" in page.text


def test_cookie_is_secure_outside_local(db_url, tmp_path):
    from api.main import create_app
    from tests.support.factories import production_secrets

    settings = Settings(
        env="staging", database_url=db_url, state_dir=tmp_path, bootstrap_admin_email=ADMIN_EMAIL,
        **production_secrets(bootstrap_admin_password=ADMIN_PASSWORD),
    )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        r = admin_login(client)
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_wrong_password_is_refused_and_recorded(anon_client, admin_settings):
    r = admin_login(anon_client, password="nope")
    assert r.status_code == 401
    assert "Wrong e-mail or password" in r.text
    assert SESSION_COOKIE not in anon_client.cookies
    attempts = db_rows(admin_settings, LoginAttempt)
    assert [(a.email, a.succeeded) for a in attempts] == [(ADMIN_EMAIL, False)]


def test_login_form_without_its_csrf_token_is_refused(anon_client):
    r = anon_client.post("/admin/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                         follow_redirects=False)
    assert r.status_code == 403
    assert SESSION_COOKIE not in anon_client.cookies


def test_rate_limit_per_email_answers_429_with_retry_after(anon_client):
    for _ in range(5):  # the fixture's limit is 5 failures a minute
        assert admin_login(anon_client, password="wrong").status_code == 401
    r = admin_login(anon_client)  # even the right password waits
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "Too many failed sign-in attempts" in r.text
    assert SESSION_COOKIE not in anon_client.cookies


def test_rate_limit_per_ip_covers_other_accounts(anon_client):
    for i in range(5):
        assert admin_login(anon_client, email=f"guess{i}@x.test", password="x").status_code == 401
    r = admin_login(anon_client)
    assert r.status_code == 429 and "IP address" in r.text


def test_login_rotates_the_session_and_logout_invalidates_it(anon_client, admin_settings):
    assert admin_login(anon_client).status_code == 303
    first = anon_client.cookies[SESSION_COOKIE]
    assert admin_login(anon_client).status_code == 303  # signing in again, with the old cookie
    second = anon_client.cookies[SESSION_COOKIE]
    assert first != second
    sessions = {s.token_hash: s for s in db_rows(admin_settings, AdminSession)}
    assert sessions[sha256_hex(first)].revoked_at is not None
    assert sessions[sha256_hex(second)].revoked_at is None

    # The old token no longer works.
    anon_client.cookies.set(SESSION_COOKIE, first)
    assert anon_client.get("/admin", headers={"accept": "application/json"}).status_code == 401
    anon_client.cookies.set(SESSION_COOKIE, second)

    csrf = admin_csrf(anon_client)
    r = anon_client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    assert "You are signed out" in anon_client.get("/admin/login").text
    # The browser dropped the cookie; a copy of it is worthless too.
    anon_client.cookies.set(SESSION_COOKIE, second)
    assert anon_client.get("/admin", headers={"accept": "application/json"}).status_code == 401
    actions = [e.action for e in db_rows(admin_settings, AuditLogEntry,
                                         AuditLogEntry.subject_type == "admin_user")]
    assert actions.count("admin.login") == 2 and actions.count("admin.logout") == 1


def test_expired_session_sends_the_browser_to_login(admin_client, admin_settings):
    from sqlalchemy import update

    from noderr_core.timeutil import utcnow

    engine = make_engine(admin_settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(update(AdminSession).values(expires_at=utcnow()))
    engine.dispose()
    r = admin_client.get("/admin/applications?status=pending_review",
                         headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/login?next=/admin/applications%3Fstatus%3Dpending_review"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/portal/x"])
def test_login_never_redirects_off_the_dashboard(anon_client, target):
    r = admin_login(anon_client, next=target)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
