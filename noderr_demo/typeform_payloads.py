"""Typeform deliveries for tests, the demo and the benchmarks: one builder, no pytest.

`application_payload` re-targets Typeform's documented `form_response` example
(`typeform_example.json`, the fields our form asks) at a fresh applicant: a unique response token,
e-mail and wallet, so every call is a new application. `encode` gives the exact bytes to post and
`signed_headers` the `Typeform-Signature` header a real delivery carries.
"""

from __future__ import annotations

import copy
import json
import secrets
from functools import lru_cache
from pathlib import Path

from eth_account import Account

from noderr_core.onboarding.typeform import SIGNATURE_HEADER, sign_body
from noderr_core.settings import LOCAL_TYPEFORM_SECRET

EXAMPLE_PATH = Path(__file__).with_name("typeform_example.json")

# Field ids of the example form (typeform_example.json).
FULL_NAME, EMAIL, WALLET, REGION = "JwWggjAKtOkA", "SMEUb7VJz92Q", "a1WalletQz8K", "R3gionX0a1bc"


@lru_cache(maxsize=1)
def _example_text() -> str:
    return EXAMPLE_PATH.read_text()


def example_payload() -> dict:
    """Typeform's example delivery, as documented (a fresh copy each call)."""
    return json.loads(_example_text())


def application_payload(*, email: str | None = None, wallet: str | None = None,
                        name: str = "Ada Operator", token: str | None = None,
                        region: str | None = None, event_type: str = "form_response") -> dict:
    """Typeform's example, re-targeted at a fresh applicant (unique token, email, wallet)."""
    payload = copy.deepcopy(example_payload())
    payload["event_type"] = event_type
    payload["event_id"] = secrets.token_hex(8)
    response = payload["form_response"]
    response["token"] = token or secrets.token_hex(16)
    by_id = {a["field"]["id"]: a for a in response["answers"]}
    by_id[FULL_NAME]["text"] = name
    by_id[EMAIL]["email"] = email or f"op-{secrets.token_hex(4)}@example.com"
    by_id[WALLET]["text"] = wallet or Account.create().address
    if region is not None:
        by_id[REGION]["choice"] = {"label": region}
    return payload


def encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(body: bytes, secret: str = LOCAL_TYPEFORM_SECRET) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign_body(secret, body), "Content-Type": "application/json"}
