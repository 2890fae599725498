"""Operator portal fixtures: the real app with a site URL the test client uses, and wallet sign-in
through the real endpoints (the challenge is signed with eth-account, as a wallet would)."""

from __future__ import annotations

import re

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from noderr_core.settings import Settings

_CSRF_RE = re.compile(r'data-csrf="([^"]*)"')


def sign_text(key: str, text: str) -> str:
    return "0x" + Account.from_key(key).sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


def siwe_challenge(client, address: str) -> dict:
    response = client.post("/operator/sign-in/challenge", json={"address": address})
    assert response.status_code == 200, response.text
    return response.json()


def operator_sign_in(client, key: str):
    """Sign in through the real endpoints; returns the final response (not raised on refusal)."""
    challenge = siwe_challenge(client, Account.from_key(key).address)
    return client.post("/operator/sign-in",
                       json={"message": challenge["message"], "signature": sign_text(key, challenge["message"])})


def operator_csrf(client) -> str:
    page = client.get("/operator", headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    return _CSRF_RE.search(page.text).group(1)


@pytest.fixture
def portal_settings(db_url, tmp_path) -> Settings:
    return Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                    public_base_url="http://testserver", chain_id=1337)


@pytest.fixture
def portal_client(portal_settings):
    from api.main import create_app

    with TestClient(create_app(portal_settings)) as client:
        yield client


@pytest.fixture
def portal_db(portal_settings):
    from noderr_core.db import make_engine, make_session_factory

    engine = make_engine(portal_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()
