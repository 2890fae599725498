"""The payout invariants end to end, on eth-tester and on the Ganache dev chain.

The reported bug: close a day early, let operators claim, close the same day again after more
work. Before, the recomputed root owed one operator less than they had already claimed and the
distributor paid 2,254 against 2,000. Now a sealed epoch is final and the later work is paid by the
next epoch: with a distributor funded with *exactly* the pools, everyone is paid exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from sqlalchemy import func, select

from noderr_core.chain.client import ChainClient, make_web3
from noderr_core.chain.deploy import deploy_contracts
from noderr_core.chain.relay import ChainHandler
from noderr_core.outbox import relay_due
from noderr_core.db import make_engine, make_session_factory
from noderr_core.rewards.claims import epoch_document, wallet_claim
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.rewards.scoring import SCORING_POLICY_VERSION, largest_remainder_split
from noderr_core.rewards.publication import queue_root_publication
from noderr_core.rewards.tree import build_epoch_tree
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY, Settings
from noderr_core.tables import OutboxMessage
from noderr_core.tables.rewards import EpochStatus, RewardEpoch
from tests.support.chain import OPERATOR_KEYS
from tests.support.rewards import add_heartbeats, add_served_slots, day_start, make_operator, make_reward_node

POOL = 2_000 * 10**18


@pytest.fixture(params=["eth_tester", "ganache"])
def funded_chain(request):
    """A fresh deployment whose distributor holds exactly two pools."""
    if request.param == "eth_tester":
        # A client of its own: the session's eth_chain client must keep the snapshot's addresses.
        w3 = request.getfixturevalue("eth_chain").w3
        client = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, receipt_timeout=15, poll_latency=0.01)
    else:
        w3 = make_web3(request.getfixturevalue("ganache").url)
        client = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, poll_latency=0.05)
    client.addresses = deploy_contracts(client, funding=2 * POOL)
    return client


def _close(session_factory, day, now):
    with session_factory() as s:
        summary = compute_epoch(s, day, pool=POOL, allow_open_day=True, now=now)
        build_epoch_tree(s, day)
        decision = queue_root_publication(s, day)
        s.commit()
    return summary, decision


def _claim(session_factory, client, key):
    wallet = Account.from_key(key).address
    with session_factory() as s:
        doc = wallet_claim(s, wallet)
    amount = int(doc["cumulative_amount"])
    proof = [bytes.fromhex(p[2:]) for p in doc["proof"]]
    op = ChainClient(client.w3, key, client.addresses, receipt_timeout=30, poll_latency=0.02)
    op.transact(client.distributor().functions.claim(wallet, amount, proof))
    return amount


def test_early_close_claim_then_recompute_pays_everyone_exactly(db_url, session_factory, funded_chain, tmp_path):
    client = funded_chain
    token, dist = client.token(), client.distributor()
    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path)
    engine = make_engine(db_url)
    day = datetime.now(UTC).date() - timedelta(days=3)
    a_key, b_key = OPERATOR_KEYS
    with session_factory() as s:
        node_a = make_reward_node(s, make_operator(s, Account.from_key(a_key).address), day_start(day) - timedelta(days=3))
        node_b = make_reward_node(s, make_operator(s, Account.from_key(b_key).address), day_start(day) - timedelta(days=3))
        add_served_slots(s, node_a, day_start(day) + timedelta(hours=8), 6)
        add_served_slots(s, node_b, day_start(day) + timedelta(hours=8), 18)
        s.commit()

    # 1. The test network closes the open day early, at noon, and the root goes on-chain.
    early, decision = _close(session_factory, day, day_start(day) + timedelta(hours=12))
    assert early.distributed_amount == POOL and decision.queued
    relay_due(make_session_factory(engine), ChainHandler(settings, client=client))
    # 2. Both operators claim.
    paid_a = _claim(session_factory, client, a_key)
    paid_b = _claim(session_factory, client, b_key)
    assert paid_a + paid_b == POOL and paid_b > paid_a

    # 3. More work that afternoon: A serves 60 more slots, B nothing.
    with session_factory() as s:
        add_served_slots(s, node_a, day_start(day) + timedelta(hours=13), 60)
        s.commit()
    # 4. After midnight the daily schedule closes the same day again: it is final, unchanged.
    again, decision = _close(session_factory, day, day_start(day) + timedelta(days=1, minutes=15))
    assert again.final and "final" in again.note and not decision.queued
    assert relay_due(make_session_factory(engine), ChainHandler(settings, client=client)).claimed == 0
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1

    # 5. The afternoon's work is paid by the next epoch, whose window starts at the early close.
    nxt, decision = _close(session_factory, day + timedelta(days=1), day_start(day) + timedelta(days=2, minutes=15))
    assert nxt.window_start == day_start(day) + timedelta(hours=12) and "carried over" in nxt.note
    assert decision.queued
    relay_due(make_session_factory(engine), ChainHandler(settings, client=client))
    with session_factory() as s:
        assert all(e.status == EpochStatus.PUBLISHED for e in s.scalars(select(RewardEpoch)))
    total_a = _claim(session_factory, client, a_key)
    total_b = paid_b  # B earned nothing more: nothing to claim, never less than already paid
    with session_factory() as s:
        assert int(wallet_claim(s, Account.from_key(b_key).address)["cumulative_amount"]) == paid_b

    # Everyone is paid exactly; the exactly funded distributor is empty, never short.
    assert total_a > paid_a
    assert token.functions.balanceOf(Account.from_key(a_key).address).call() == total_a
    assert token.functions.balanceOf(Account.from_key(b_key).address).call() == total_b
    assert total_a + total_b == 2 * POOL == dist.functions.total_cumulative().call()
    assert dist.functions.total_claimed().call() == 2 * POOL
    assert token.functions.balanceOf(dist.address).call() == 0

    # The public document of the next epoch shows the carried-over window and lets any operator
    # recompute every score and share from its inputs and the named policy.
    with session_factory() as s:
        doc = epoch_document(s, day + timedelta(days=1))
    assert doc["policy_version"] == SCORING_POLICY_VERSION and doc["final"] is True
    assert doc["window"]["carried_over_from"] == (day_start(day) + timedelta(hours=12)).isoformat()
    w = doc["scoring"]
    scores = {}
    for n in doc["nodes"]:
        scores[n["node_id"]] = max(0, w["points_per_proven_slot"] * n["proven_slots"]
                                   + w["points_per_valid_task"] * n["tasks_valid"]
                                   - w["penalty_per_invalid_task"] * n["tasks_invalid"]
                                   - w["penalty_per_error_task"] * n["tasks_error"])
        assert scores[n["node_id"]] == n["score"]
    assert largest_remainder_split(int(doc["pool_amount"]), sorted(scores.items())) == {
        n["node_id"]: int(n["amount"]) for n in doc["nodes"]}
    engine.dispose()
