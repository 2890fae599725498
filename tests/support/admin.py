"""Admin dashboard fixtures: the real app on a migrated database, and a signed-in client."""

from __future__ import annotations

import re
import secrets

import pytest
from fastapi.testclient import TestClient

from noderr_core.settings import Settings
from noderr_demo.typeform_payloads import EXAMPLE_PATH

ADMIN_EMAIL = "admin@noderr.test"
ADMIN_PASSWORD = "correct horse battery staple"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def admin_login(client: TestClient, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD,
                **extra):
    """Submit the real login form (with its CSRF token); returns the response (not followed)."""
    page = client.get("/admin/login")
    data = {"email": email, "password": password, "csrf_token": csrf_from(page.text), **extra}
    return client.post("/admin/login", data=data, follow_redirects=False)


def admin_csrf(client: TestClient) -> str:
    """The signed-in session's CSRF token, read from a page as a browser would."""
    return csrf_from(client.get("/admin/audit", headers={"accept": "text/html"}).text)


@pytest.fixture
def admin_settings(db_url, tmp_path) -> Settings:
    return Settings(
        env="test",
        database_url=db_url,
        state_dir=tmp_path / "state",
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        login_rate_limit_per_minute=5,
    )


@pytest.fixture
def admin_app(admin_settings):
    from api.main import create_app

    return create_app(admin_settings)


@pytest.fixture
def anon_client(admin_app):
    with TestClient(admin_app) as client:
        yield client


@pytest.fixture
def admin_client(admin_app):
    """A TestClient signed in as the bootstrap admin."""
    with TestClient(admin_app) as client:
        response = admin_login(client)
        assert response.status_code == 303, response.text
        yield client


def make_pending_application(session, *, full_name: str = "Ada Lovelace", email: str | None = None,
                             wallet: str | None = None, region: str = "eu-west",
                             tier: str = "standard") -> int:
    """An application as the webhook stores it, then screened by the real screening function."""
    from eth_account import Account

    from noderr_core.audit import Actor
    from noderr_core.tables import OperatorApplication
    from noderr_core.onboarding.screening import screen_application

    email = email or f"{full_name.split()[0].lower()}-{secrets.token_hex(3)}@example.com"
    wallet = wallet or Account.create().address
    app = OperatorApplication(
        form_response_token=secrets.token_hex(16),
        form_id="lT4Z3j",
        raw_payload=EXAMPLE_PATH.read_text(),
        answers={"full_name": full_name, "email": email, "wallet_address": wallet,
                 "node_tier": tier, "region": region, "hardware": "8 vCPU, 32 GB"},
        unmapped_answers={"favourite_model": "iris"},
        hidden_fields={"utm_source": "newsletter"},
        full_name=full_name, email=email, wallet_address=wallet, node_tier=tier, region=region,
    )
    session.add(app)
    session.flush()
    screen_application(session, app.id, Actor.pipeline("test-screening"))
    session.flush()
    return app.id


def provision(session_factory, settings, application_id: int):
    """Carry out the recorded decision as the onboarding pipeline's job does."""
    from noderr_core.audit import Actor
    from noderr_core.onboarding.provisioning import carry_out_decision

    with session_factory() as s:
        outcome = carry_out_decision(s, application_id=application_id, settings=settings,
                                     actor=Actor.pipeline("test-decision"))
        s.commit()
        return outcome


@pytest.fixture
def admin_db(admin_settings):
    """A session factory on the admin app's database (separate engine, disposed at teardown)."""
    from noderr_core.db import make_engine, make_session_factory

    engine = make_engine(admin_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()
