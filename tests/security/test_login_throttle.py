"""The sign-in throttle holds under concurrency and locks no admin out (findings 3 and 4).

Concurrency runs the core function from threads with their own database sessions (as API worker
threads do), released together by a barrier; argon2 verifications are counted, not timed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from noderr_core.admin import sessions as admin_sessions
from noderr_core import security
from noderr_core.admin.sessions import InvalidCredentials, LoginRateLimited, authenticate_admin
from noderr_core.bootstrap import ensure_bootstrap_admin
from noderr_core.db import make_engine, make_session_factory
from noderr_core.settings import Settings
from tests.support.admin import ADMIN_EMAIL, ADMIN_PASSWORD, admin_csrf, admin_login

LIMIT = 5


class VerifyCounter:
    """Counts argon2 verifications (real ones: the hasher still runs) and their peak concurrency."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        hasher = security._password_hasher
        real = hasher.verify

        def counting(hash_, password):
            with self._lock:
                self.calls += 1
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                return real(hash_, password)
            finally:
                with self._lock:
                    self.running -= 1

        class CountingHasher:
            hash = staticmethod(hasher.hash)
            verify = staticmethod(counting)

        monkeypatch.setattr(security, "_password_hasher", CountingHasher())


@pytest.fixture
def world(db_url, tmp_path):
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path / "s",
                        bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=ADMIN_PASSWORD)
    with factory() as s:
        ensure_bootstrap_admin(s, settings)
        s.commit()
    yield factory
    engine.dispose()


def _attempt(factory, *, password: str, ip: str, email: str = ADMIN_EMAIL, device=None):
    with factory() as s:
        try:
            authenticate_admin(s, email=email, password=password, ip=ip, user_agent="t",
                               ttl_hours=1, limit_per_minute=LIMIT, device=device)
            s.commit()
            return "ok"
        except LoginRateLimited:
            return "limited"
        except InvalidCredentials:
            return "wrong"


def test_twenty_concurrent_wrong_passwords_hash_at_most_the_limit(world, monkeypatch):
    counter = VerifyCounter(monkeypatch)
    barrier = threading.Barrier(20)

    def one(i):
        barrier.wait()
        return _attempt(world, password=f"guess-{i}", ip="203.0.113.7")

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count("wrong") <= LIMIT
    assert outcomes.count("limited") >= 20 - LIMIT
    assert counter.calls == outcomes.count("wrong") <= LIMIT
    assert counter.peak <= security.MAX_CONCURRENT_PASSWORD_HASHES


def test_strangers_cannot_lock_out_a_browser_that_signed_in_before(world):
    secret = "k" * 40
    # The admin signed in from this browser once: it holds a device cookie.
    cookie = admin_sessions.issue_device_cookie(secret, ADMIN_EMAIL)
    device = admin_sessions.trusted_device(secret, ADMIN_EMAIL, cookie)
    assert device is not None
    # Strangers from many addresses use up the account's allowance for untrusted clients.
    outcomes = [_attempt(world, password="guess", ip=f"198.51.100.{i}") for i in range(LIMIT + 3)]
    assert outcomes[:LIMIT] == ["wrong"] * LIMIT and set(outcomes[LIMIT:]) == {"limited"}
    # Another untrusted client with the right password is refused too (slowing guesses)...
    assert _attempt(world, password=ADMIN_PASSWORD, ip="192.0.2.1") == "limited"
    # ...but the admin's own browser keeps its allowance.
    assert _attempt(world, password=ADMIN_PASSWORD, ip="192.0.2.1", device=device) == "ok"
    # A forged or foreign device cookie is just an untrusted client.
    assert admin_sessions.trusted_device(secret, ADMIN_EMAIL, device + ".00") is None
    assert admin_sessions.trusted_device(secret, "other@noderr.test", cookie) is None


def test_unknown_and_known_emails_both_do_one_argon2_verification(world, monkeypatch):
    counter = VerifyCounter(monkeypatch)
    assert _attempt(world, password="wrong password", ip="192.0.2.10") == "wrong"
    assert counter.calls == 1
    assert _attempt(world, password="wrong password", ip="192.0.2.11", email="nobody@noderr.test") == "wrong"
    assert counter.calls == 2  # the unknown e-mail was checked against a dummy hash


def test_password_hashes_per_process_are_bounded(monkeypatch):
    counter = VerifyCounter(monkeypatch)
    hashed = security.hash_password("some password")
    barrier = threading.Barrier(8)

    def one(_):
        barrier.wait()
        return security.verify_password(hashed, "some password")

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(8)))
    assert counter.calls == 8
    assert counter.peak <= security.MAX_CONCURRENT_PASSWORD_HASHES


def test_browser_device_cookie_and_change_password_throttle(admin_app, admin_db):
    """Through the real app: the cookie is issued at sign-in; the change-password form is throttled."""
    with TestClient(admin_app) as browser:
        r = admin_login(browser)
        assert r.status_code == 303
        device_cookie = next(h for h in r.headers.get_list("set-cookie")
                             if h.startswith("noderr_admin_device="))
        assert "HttpOnly" in device_cookie and "SameSite=strict" in device_cookie
        token = admin_csrf(browser)
        statuses = []
        for _ in range(admin_app.state.settings.login_rate_limit_per_minute + 2):
            r = browser.post("/admin/account/password", data={
                "csrf_token": token, "current_password": "not it", "new_password": "x" * 20})
            statuses.append(r.status_code)
        assert statuses[0] == 400 and statuses[-1] == 429, statuses
        assert "Too many failed sign-in attempts" in r.text and int(r.headers["retry-after"]) >= 1
