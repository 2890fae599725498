"""Onboarding test helpers: settings for a test database, Typeform payloads, signing."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path

import pytest
from eth_account import Account

from noderr_core.onboarding.typeform import sign_body
from noderr_core.settings import LOCAL_TYPEFORM_SECRET, Settings

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "typeform_example.json"


def example_payload() -> dict:
    return json.loads(FIXTURE.read_text())


def application_payload(*, email: str | None = None, wallet: str | None = None, name: str = "Ada Operator",
                        token: str | None = None, event_type: str = "form_response") -> dict:
    """Typeform's example, re-targeted at a fresh applicant (unique token, email, wallet)."""
    payload = copy.deepcopy(example_payload())
    payload["event_type"] = event_type
    payload["event_id"] = secrets.token_hex(8)
    response = payload["form_response"]
    response["token"] = token or secrets.token_hex(16)
    by_id = {a["field"]["id"]: a for a in response["answers"]}
    by_id["JwWggjAKtOkA"]["text"] = name
    by_id["SMEUb7VJz92Q"]["email"] = email or f"op-{secrets.token_hex(4)}@example.com"
    by_id["a1WalletQz8K"]["text"] = wallet or Account.create().address
    return payload


def encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(body: bytes, secret: str = LOCAL_TYPEFORM_SECRET) -> dict[str, str]:
    return {"Typeform-Signature": sign_body(secret, body), "Content-Type": "application/json"}


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                    public_base_url="http://testserver", smtp_url="smtp://127.0.0.1:1")
