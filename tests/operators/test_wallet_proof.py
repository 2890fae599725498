"""Rewards wait for the wallet proof: an epoch pays only wallets their operator signed in with, and
the approval e-mail and the bundle README say so and link the operator pages."""

from __future__ import annotations

from datetime import timedelta

from eth_account import Account
from sqlalchemy import select

from noderr_core.email import render_email
from noderr_core.onboarding.bundle import readme
from noderr_core.operators.sessions import SignInSite, issue_challenge, sign_in_with_ethereum
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.settings import Settings
from noderr_core.tables import Operator, OutboxMessage
from noderr_core.tables.rewards import OperatorReward
from tests.support.admin import make_pending_application, provision
from tests.support.operators import sign_text
from tests.support.rewards import add_served_slots, day_start, make_reward_node

POOL = 1_000 * 10**18


def test_rewards_accrue_only_to_proven_wallets(session_factory, past_days):
    day = past_days[0]
    proven_key, unproven_key = Account.create(), Account.create()
    site = SignInSite.from_base_url("https://noderr.example", 1337)
    with session_factory() as s:
        ids = {}
        for account, proven in ((proven_key, True), (unproven_key, False)):
            op = Operator(email=f"{account.address[:8]}@example.com", wallet_address=account.address)
            s.add(op)
            s.flush()
            node = make_reward_node(s, op, day_start(day) - timedelta(days=1))
            # Proven service (policy 2026-11-v2): judged-valid results, one per 5-minute slot.
            add_served_slots(s, node, day_start(day), 48)
            ids[account.address] = node.id
            if proven:
                text = issue_challenge(s, site, address=account.address).to_text()
                sign_in_with_ethereum(s, site, text=text,
                                      signature=sign_text(account.key.hex(), text),
                                      ip=None, user_agent=None, ttl_hours=1)
        summary = compute_epoch(s, day, pool=POOL)
        s.commit()
        paid = {r.wallet: r.amount for r in s.scalars(select(OperatorReward))}
    assert paid == {proven_key.address: POOL}
    assert "not proven yet" in summary.skipped_nodes[ids[unproven_key.address]]

    # Once the second operator signs in, recomputing the epoch splits the pool between both.
    with session_factory() as s:
        text = issue_challenge(s, site, address=unproven_key.address).to_text()
        sign_in_with_ethereum(s, site, text=text,
                              signature=sign_text(unproven_key.key.hex(), text),
                              ip=None, user_agent=None, ttl_hours=1)
        compute_epoch(s, day, pool=POOL)
        s.commit()
        paid = {r.wallet: r.amount for r in s.scalars(select(OperatorReward))}
    assert paid == {proven_key.address: POOL // 2, unproven_key.address: POOL // 2}


def test_the_approval_email_and_the_bundle_readme_point_to_the_operator_pages(session_factory, db_url, tmp_path):
    from noderr_core.audit import Actor
    from noderr_core.onboarding.applications import decide_application

    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                        public_base_url="https://noderr.example")
    with session_factory() as s:
        app_id = make_pending_application(s)
        decide_application(s, application_id=app_id, actor=Actor.system("admin"), decision="approve", reason=None)
        s.commit()
    provision(session_factory, settings, app_id)
    with session_factory() as s:
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
    email = render_email("approval", {**mail.payload["context"], "portal_url": "https://x/portal/download/t"})
    for part in (email.text, email.html):
        assert "https://noderr.example/operator" in part
        assert "Rewards accrue to your wallet" in part and "only after this first sign-in proves it" in " ".join(part.split())
    text = readme(settings, node_id="node_1", image="noderr-node:1")
    assert "https://noderr.example/operator" in text and "sign in with your payout" in " ".join(text.split())
