"""The chain outbox relay against eth-tester: registration, idempotent publish, RPC down, reverts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from eth_account import Account
from sqlalchemy import func, select, update

from noderr_core.chain.client import ChainClient, make_web3, node_id_bytes32
from noderr_core.chain.relay import ChainHandler
from noderr_core.db import make_session_factory
from noderr_core.tables import Node, OutboxAttempt, OutboxMessage
from noderr_core.tables.rewards import ChainTransaction, EpochStatus, RewardEpoch
from noderr_core.outbox import enqueue, relay_due
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.rewards.publication import queue_root_publication
from noderr_core.rewards.tree import build_epoch_tree
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY, Settings
from noderr_core.timeutil import utcnow
from noderr_local.process import free_port
from tests.support.rewards import add_served_slots, day_start, make_operator, make_reward_node

POOL = 500 * 10**18


@pytest.fixture
def settings(db_url, tmp_path):
    return Settings(env="test", state_dir=tmp_path, database_url=db_url)


def _register_row(session, node):
    """The row provisioning (onboarding area) enqueues for an approved node."""
    from noderr_core.tables import Operator

    wallet = session.get(Operator, node.operator_id).wallet_address
    return enqueue(session, kind="chain", idempotency_key=f"chain:register_node:{node.id}",
                   payload={"action": "register_node", "node_id": node.id, "operator_wallet": wallet},
                   subject_type="node", subject_id=node.id)


def _make_due(session_factory):
    with session_factory() as s:
        s.execute(update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def test_register_then_deregister_node_on_chain(engine, session_factory, settings, eth_chain):
    with session_factory() as s:
        op = make_operator(s)
        node = make_reward_node(s, op, utcnow())
        _register_row(s, node)
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["mined"] == 1 and len(report.failed) == 0
    reg = eth_chain.client.registry()
    assert reg.functions.is_active(node_id_bytes32(node.id)).call()
    assert reg.functions.operator_of(node_id_bytes32(node.id)).call() == op.wallet_address
    with session_factory() as s:
        assert s.get(Node, node.id).chain_registered_at is not None
        tx = s.scalar(select(ChainTransaction))
        assert tx.outcome == "mined" and tx.tx_hash.startswith("0x") and tx.block_number

        # Suspension (admin area) queues a deregistration.
        enqueue(s, kind="chain", idempotency_key=f"chain:deregister_node:{node.id}:1",
                payload={"action": "deregister_node", "node_id": node.id}, subject_type="node", subject_id=node.id)
        s.commit()
    relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert not reg.functions.is_active(node_id_bytes32(node.id)).call()
    with session_factory() as s:
        assert s.get(Node, node.id).chain_registered_at is None
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent")) == 2


def test_an_effect_already_on_chain_sends_no_second_transaction(engine, session_factory, settings, eth_chain):
    with session_factory() as s:
        op = make_operator(s)
        node = make_reward_node(s, op, utcnow())
        _register_row(s, node)
        s.commit()
    # A previous attempt's transaction was mined but the relay never recorded it.
    eth_chain.client.transact(eth_chain.client.registry().functions.register_node(
        node_id_bytes32(node.id), op.wallet_address))
    block = eth_chain.w3.eth.block_number
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["already_done"] == 1 and report.outcomes["mined"] == 0
    assert eth_chain.w3.eth.block_number == block  # no transaction
    with session_factory() as s:
        msg = s.scalar(select(OutboxMessage))
        assert msg.status == "sent" and msg.result["outcome"] == "already_done"
        assert s.get(Node, node.id).chain_registered_at is not None


def _publishable_epoch(session_factory, day):
    with session_factory() as s:
        op = make_operator(s)
        node = make_reward_node(s, op, day_start(day) - timedelta(days=1))
        add_served_slots(s, node, day_start(day), 12)
        s.commit()
        compute_epoch(s, day, pool=POOL)
        build_epoch_tree(s, day)
        decision = queue_root_publication(s, day)
        s.commit()
        return decision, op.wallet_address


def test_publish_under_retries_sends_one_transaction(engine, session_factory, settings, eth_chain, past_days):
    day = past_days[0]
    decision, _ = _publishable_epoch(session_factory, day)
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["mined"] == 1
    dist = eth_chain.client.distributor()
    with session_factory() as s:
        epoch = s.scalar(select(RewardEpoch))
        assert epoch.status == EpochStatus.PUBLISHED and epoch.published_tx_hash
        assert "0x" + dist.functions.merkle_root().call().hex() == epoch.merkle_root
        root = epoch.merkle_root
    block = eth_chain.w3.eth.block_number

    # The Dagster run is retried: recompute, rebuild, queue again.
    with session_factory() as s:
        compute_epoch(s, day, pool=POOL)
        build_epoch_tree(s, day)
        again = queue_root_publication(s, day)
        s.commit()
        assert again.outbox_id == decision.outbox_id and again.queued is False
        epoch = s.scalar(select(RewardEpoch))
        assert epoch.merkle_root == root and epoch.status == EpochStatus.PUBLISHED
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.claimed == 0
    assert eth_chain.w3.eth.block_number == block
    # Even if the same row were delivered twice (lease expiry), the on-chain check makes it a no-op.
    with session_factory() as s:
        s.execute(update(OutboxMessage).values(status="pending", next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["already_done"] == 1 and eth_chain.w3.eth.block_number == block


def test_rpc_down_retries_and_nothing_is_lost(engine, session_factory, settings, eth_chain, past_days):
    _publishable_epoch(session_factory, past_days[0])
    dead = ChainClient(make_web3(f"http://127.0.0.1:{free_port()}", timeout=2), LOCAL_CHAIN_SIGNER_KEY,
                       eth_chain.addresses)
    for attempt in (1, 2):
        report = relay_due(make_session_factory(engine), ChainHandler(settings, client=dead))
        assert len(report.retrying) == 1 and len(report.failed) == 0
        with session_factory() as s:
            msg = s.scalar(select(OutboxMessage))
            assert msg.status == "pending" and msg.attempts == attempt
            assert "chain RPC" in msg.last_error
            assert msg.next_attempt_at > utcnow()  # backoff
            assert s.scalar(select(RewardEpoch.status)) == EpochStatus.PUBLISH_QUEUED
        _make_due(session_factory)
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["mined"] == 1
    with session_factory() as s:
        assert s.scalar(select(RewardEpoch.status)) == EpochStatus.PUBLISHED
        attempts = s.scalars(select(OutboxAttempt).order_by(OutboxAttempt.id)).all()
        assert [a.succeeded for a in attempts] == [False, False, True]


def test_a_reverted_transaction_fails_the_row_with_the_reason(engine, session_factory, settings, eth_chain, past_days):
    # The registry's registrar is handed to someone else: our signer's registrations now revert.
    other = Account.create().address
    eth_chain.client.transact(eth_chain.client.registry().functions.set_registrar(other))
    with session_factory() as s:
        op = make_operator(s)
        node = make_reward_node(s, op, utcnow())
        _register_row(s, node)
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert len(report.failed) == 1
    with session_factory() as s:
        msg = s.scalar(select(OutboxMessage))
        assert msg.status == "failed" and "only registrar" in msg.last_error
        tx = s.scalar(select(ChainTransaction))
        assert tx.outcome == "reverted" and tx.revert_reason == "only registrar"
        assert s.get(Node, node.id).chain_registered_at is None


def test_a_refused_root_marks_the_epoch_publish_failed(engine, session_factory, settings, eth_chain, past_days):
    # Someone already published a later epoch's root with a larger total: ours is refused.
    eth_chain.client.transact(eth_chain.client.distributor().functions.publish_root(
        20000101, b"\x01" * 32, 10**26))
    _publishable_epoch(session_factory, past_days[0])
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert len(report.failed) == 1
    with session_factory() as s:
        epoch = s.scalar(select(RewardEpoch))
        assert epoch.status == EpochStatus.PUBLISH_FAILED
        assert "cumulative total cannot decrease" in epoch.publish_error


def test_unknown_actions_and_bad_payloads_fail_without_retry(engine, session_factory, settings, eth_chain):
    with session_factory() as s:
        enqueue(s, kind="chain", idempotency_key="chain:x:1", payload={"action": "mint_everything"})
        enqueue(s, kind="chain", idempotency_key="chain:register_node:node_x",
                payload={"action": "register_node", "node_id": "node_x", "operator_wallet": "not-a-wallet"})
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert len(report.failed) == 2
    with session_factory() as s:
        errors = sorted(m.last_error for m in s.scalars(select(OutboxMessage)))
        assert "unknown chain action 'mint_everything'" in errors[0]
        assert "not an address" in errors[1]


def test_an_older_node_row_is_superseded_by_a_newer_one(engine, session_factory, settings, eth_chain):
    with session_factory() as s:
        op = make_operator(s)
        node = make_reward_node(s, op, utcnow())
        _register_row(s, node)
        enqueue(s, kind="chain", idempotency_key=f"chain:deregister_node:{node.id}:1",
                payload={"action": "deregister_node", "node_id": node.id}, subject_type="node", subject_id=node.id)
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings, client=eth_chain.client))
    assert report.outcomes["superseded"] == 1 and report.outcomes["already_done"] == 1 and report.outcomes["mined"] == 0
    assert not eth_chain.client.registry().functions.is_active(node_id_bytes32(node.id)).call()


def test_missing_addresses_file_is_retried_with_an_actionable_error(engine, session_factory, settings):
    with session_factory() as s:
        enqueue(s, kind="chain", idempotency_key="chain:deregister_node:node_y:1",
                payload={"action": "deregister_node", "node_id": "node_y"})
        s.commit()
    report = relay_due(make_session_factory(engine), ChainHandler(settings))
    assert len(report.retrying) == 1
    with session_factory() as s:
        assert "noderr chain deploy" in s.scalar(select(OutboxMessage.last_error))
