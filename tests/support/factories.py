"""Test data factories that go through the real schema (no fakes of behaviour)."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account

from noderr_core.tables import Node, NodeStatus, Operator
from noderr_core.security import NODE_KEY_PREFIX, issue_api_key
from noderr_core.timeutil import utcnow


def make_node(
    session,
    *,
    operator: Operator | None = None,
    wallet: str | None = None,
    email: str | None = None,
    status: str = NodeStatus.ONLINE,
) -> tuple[Node, str]:
    """An operator (created unless given) with one node; returns (node, plaintext API key)."""
    if operator is None:
        operator = Operator(
            email=email or f"op-{secrets.token_hex(4)}@example.com",
            full_name="Test Operator",
            wallet_address=wallet or Account.create().address,
            wallet_proven_at=utcnow(),  # signed in with it once: rewards accrue (see operators/)
        )
        session.add(operator)
        session.flush()
    key = issue_api_key(NODE_KEY_PREFIX)
    node = Node(
        id=f"node_{secrets.token_hex(8)}",
        operator_id=operator.id,
        status=status,
        api_key_id=key.key_id,
        api_key_hash=key.key_hash,
    )
    session.add(node)
    session.flush()
    return node, key.plaintext


@pytest.fixture
def node_factory(session_factory):
    """Creates committed nodes: `node, key = node_factory()`."""

    def create(**kwargs) -> tuple[Node, str]:
        with session_factory() as s:
            node, key = make_node(s, **kwargs)
            s.commit()
            return node, key

    return create


def production_secrets(**overrides: str) -> dict[str, str]:
    """Random secrets strong enough for Settings outside local (noderr_core.secret_strength)."""
    values = {
        "typeform_secret": secrets.token_urlsafe(24),
        "secret_key": secrets.token_urlsafe(32),
        "bootstrap_admin_password": "Adm1n-" + secrets.token_urlsafe(16),
        "s3_secret_access_key": secrets.token_urlsafe(30),
        "chain_signer_key": "0x" + secrets.token_hex(32),
        "model_signing_key": secrets.token_hex(32),
        "metrics_token": secrets.token_urlsafe(24),
    }
    values.update(overrides)
    return values
