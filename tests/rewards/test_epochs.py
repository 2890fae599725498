"""Epoch computation on SQLite and PostgreSQL: shares, reasons, exact pool, idempotent rewrites,
backfills and the cumulative tree."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from noderr_core.tables.rewards import EpochStatus, NodeReward, OperatorReward, RewardEpoch, RewardLeaf
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.rewards.merkle import build_tree, verify_proof
from noderr_core.rewards.scoring import SLOTS_PER_DAY, largest_remainder_split, score_node
from noderr_core.rewards.publication import queue_root_publication
from noderr_core.rewards.tree import build_epoch_tree
from tests.support.rewards import (
    add_heartbeats,
    add_judged_results,
    add_served_slots,
    day_start,
    make_operator,
    make_reward_node,
)

POOL = 1_000 * 10**18


def _world(session, day):
    """Operator A: a node proving service all day and a half-day node with invalid results.
    Operator B: a node created at noon that only heartbeats. Plus activity outside the epoch."""
    start = day_start(day)
    a, b = make_operator(session), make_operator(session)
    full = make_reward_node(session, a, start - timedelta(days=10), "node_aaaa000000000001")
    half = make_reward_node(session, a, start - timedelta(days=10), "node_aaaa000000000002")
    late = make_reward_node(session, b, start + timedelta(hours=12), "node_bbbb000000000003")
    add_heartbeats(session, full.id, start, start + timedelta(days=1), timedelta(seconds=60))
    add_heartbeats(session, half.id, start, start + timedelta(hours=12), timedelta(seconds=150))
    add_heartbeats(session, late.id, start + timedelta(hours=12), start + timedelta(days=1), timedelta(seconds=300))
    # Outside the epoch: the day before and exactly at the next midnight.
    add_heartbeats(session, half.id, start - timedelta(hours=3), start, timedelta(seconds=60))
    add_heartbeats(session, half.id, start + timedelta(days=1), start + timedelta(days=1, minutes=1), timedelta(seconds=60))
    add_served_slots(session, full, start, SLOTS_PER_DAY)
    add_served_slots(session, half, start, SLOTS_PER_DAY // 2)
    add_judged_results(session, full, start + timedelta(hours=3), valid=40, error=2, pending=5)
    add_judged_results(session, half, start + timedelta(hours=4), valid=10, invalid=4)
    add_judged_results(session, half, start - timedelta(minutes=1), valid=100)  # previous epoch
    session.commit()
    return a, b, full, half, late


def test_epoch_shares_follow_proven_service_work_and_penalties(session_factory, past_days):
    day = past_days[0]
    with session_factory() as s:
        a, b, full, half, late = _world(s, day)
        summary = compute_epoch(s, day, pool=POOL)
        s.commit()

    assert summary.distributed_amount == POOL
    with session_factory() as s:
        rows = {r.node_id: r for r in s.scalars(select(NodeReward))}
        assert rows[full.id].proven_slots == SLOTS_PER_DAY and rows[full.id].eligible_slots == SLOTS_PER_DAY
        assert (rows[full.id].tasks_valid, rows[full.id].tasks_invalid, rows[full.id].tasks_error) == (
            SLOTS_PER_DAY + 40, 0, 2)
        assert rows[full.id].error_penalty == 2 * 10
        assert rows[half.id].proven_slots == SLOTS_PER_DAY // 2
        assert rows[half.id].uptime_slots == SLOTS_PER_DAY // 2  # what its heartbeats claimed
        assert rows[half.id].heartbeat_count == 12 * 3600 // 150
        assert (rows[half.id].tasks_valid, rows[half.id].tasks_invalid) == (SLOTS_PER_DAY // 2 + 10, 4)
        assert rows[half.id].invalid_penalty == 4 * 25
        # Heartbeats alone prove nothing: the noon node said it was up all afternoon and earns 0.
        assert rows[late.id].eligible_slots == SLOTS_PER_DAY // 2
        assert rows[late.id].uptime_slots == SLOTS_PER_DAY // 2 and rows[late.id].proven_slots == 0
        assert rows[late.id].score == 0 and rows[late.id].amount == 0

        expected_scores = {
            full.id: score_node(proven_slots=288, tasks_valid=328, tasks_invalid=0, tasks_error=2).score,
            half.id: score_node(proven_slots=144, tasks_valid=154, tasks_invalid=4, tasks_error=0).score,
            late.id: 0,
        }
        assert expected_scores[full.id] == 10 * 288 + 5 * 328 - 10 * 2
        assert {k: r.score for k, r in rows.items()} == expected_scores
        expected_amounts = largest_remainder_split(POOL, sorted(expected_scores.items()))
        assert {k: r.amount for k, r in rows.items()} == expected_amounts
        assert sum(r.amount for r in rows.values()) == POOL
        assert rows[full.id].amount > rows[half.id].amount > rows[late.id].amount == 0

        ops = {o.wallet: o.amount for o in s.scalars(select(OperatorReward))}
        assert ops == {a.wallet_address: POOL}
        assert b.wallet_address not in ops


def test_recomputing_an_epoch_rewrites_the_same_rows(session_factory, past_days):
    day = past_days[0]
    with session_factory() as s:
        _world(s, day)
        compute_epoch(s, day, pool=POOL)
        s.commit()
        first = sorted((r.node_id, r.amount, r.score) for r in s.scalars(select(NodeReward)))
        build_epoch_tree(s, day)
        s.commit()
        root = s.scalar(select(RewardEpoch.merkle_root))
    with session_factory() as s:
        compute_epoch(s, day, pool=POOL)
        build_epoch_tree(s, day)
        s.commit()
        again = sorted((r.node_id, r.amount, r.score) for r in s.scalars(select(NodeReward)))
        assert again == first
        assert s.scalar(select(func.count()).select_from(NodeReward)) == 3
        assert s.scalar(select(func.count()).select_from(RewardEpoch)) == 1
        assert s.scalar(select(RewardEpoch.merkle_root)) == root


def test_an_epoch_without_activity_distributes_nothing_and_has_nothing_to_publish(session_factory, past_days):
    with session_factory() as s:
        summary = compute_epoch(s, past_days[0], pool=POOL)
        tree = build_epoch_tree(s, past_days[0])
        decision = queue_root_publication(s, past_days[0])
        s.commit()
    assert summary.distributed_amount == 0 and summary.node_count == 0
    assert tree.merkle_root is None
    assert decision.queued is False and "nobody" in decision.reason


def test_an_unfinished_day_is_refused(session_factory):
    from noderr_core.timeutil import utcnow

    with session_factory() as s, pytest.raises(ValueError, match="has not ended"):
        compute_epoch(s, utcnow().date(), pool=POOL)


def test_backfilled_epochs_accumulate_in_the_tree(session_factory, past_days):
    d1, d2, d3 = past_days
    with session_factory() as s:
        a, b = make_operator(s), make_operator(s)
        na = make_reward_node(s, a, day_start(d1) - timedelta(days=1))
        nb = make_reward_node(s, b, day_start(d1) - timedelta(days=1))
        for day in past_days:
            add_served_slots(s, na, day_start(day), 48)
        add_served_slots(s, nb, day_start(d2), 40)
        s.commit()
        # Out of order, as a backfill may run them.
        for day in (d3, d1, d2):
            compute_epoch(s, day, pool=POOL)
            s.commit()
        trees = {day: build_epoch_tree(s, day) for day in past_days}
        s.commit()

        per_epoch = {
            (e.epoch_date, o.wallet): o.amount
            for o, e in s.execute(select(OperatorReward, RewardEpoch).join(RewardEpoch))
        }
        assert sum(v for (d, _), v in per_epoch.items() if d == d2) == POOL
        cumulative_a = sum(v for (d, w), v in per_epoch.items() if w == a.wallet_address)
        assert cumulative_a + per_epoch[(d2, b.wallet_address)] == 3 * POOL
        assert trees[d3].total_cumulative == 3 * POOL
        assert trees[d1].total_cumulative == POOL and trees[d1].leaf_count == 1

        leaves = dict(s.execute(
            select(RewardLeaf.wallet, RewardLeaf.cumulative_amount)
            .join(RewardEpoch).where(RewardEpoch.epoch_date == d3)
        ).all())
        assert leaves == {a.wallet_address: cumulative_a, b.wallet_address: per_epoch[(d2, b.wallet_address)]}
        tree = build_tree(leaves.items())
        assert tree.root_hex == trees[d3].merkle_root
        amount, proof = tree.proof_for(a.wallet_address)
        assert verify_proof(trees[d3].merkle_root, a.wallet_address, amount, proof)


def test_epoch_on_postgresql_with_generated_telemetry_matches_a_reference(pg_url, past_days):
    """Telemetry generated in SQL (generate_series) for 30 nodes; the epoch must agree with an
    independent per-row computation in Python."""
    from noderr_core.db import make_engine, make_session_factory

    engine = make_engine(pg_url)
    day = past_days[1]
    start = day_start(day)
    rng = random.Random(3)
    try:
        factory = make_session_factory(engine)
        with factory() as s:
            nodes = []
            for i in range(10):
                op = make_operator(s)
                for _ in range(3):
                    nodes.append(make_reward_node(s, op, start - timedelta(days=2)))
            s.commit()
            for i, node in enumerate(nodes):
                # Heartbeats every `step` seconds with a node-specific outage window.
                step = rng.choice([30, 60, 90, 120, 400])
                outage_from, outage_len = rng.randrange(0, 86400), rng.randrange(0, 6 * 3600)
                s.execute(text("""
                    INSERT INTO heartbeats (node_id, received_at, uptime_seconds, model_versions,
                                            inference_count, tasks_done, errors)
                    SELECT :node, :start + make_interval(secs => g), 0, '{}', 0, 0, 0
                    FROM generate_series(:off, 86400 + 7200, :step) AS g
                    WHERE g NOT BETWEEN :o1 AND :o2
                """), {"node": node.id, "start": start.replace(tzinfo=None) - timedelta(hours=1),
                       "off": rng.randrange(0, step), "step": step,
                       "o1": outage_from, "o2": outage_from + outage_len})
                add_judged_results(s, node, start + timedelta(seconds=rng.randrange(0, 86400)),
                                   valid=rng.randrange(0, 30), invalid=rng.randrange(0, 4),
                                   error=rng.randrange(0, 3))
                add_served_slots(s, node, start + timedelta(seconds=rng.randrange(-3600, 86400)),
                                 rng.randrange(0, 12), every=timedelta(minutes=rng.choice([2, 5, 17])))
            s.commit()
            summary = compute_epoch(s, day, pool=POOL)
            s.commit()

            # Reference: every raw row fetched and scored in Python.
            end = start + timedelta(days=1)
            slots: dict[str, set] = {}
            outcomes: dict[str, dict] = {}
            for node_id, outcome, judged, submitted in s.execute(
                    text("SELECT node_id, outcome, judged_at, submitted_at FROM task_assignments")):
                if judged is not None and start <= judged.replace(tzinfo=start.tzinfo) < end:
                    outcomes.setdefault(node_id, {}).setdefault(outcome, 0)
                    outcomes[node_id][outcome] += 1
                    if outcome == "valid":
                        at = submitted.replace(tzinfo=start.tzinfo)
                        slots.setdefault(node_id, set()).add(int((at - start).total_seconds()) // 300)
            expected = {}
            for node in nodes:
                o = outcomes.get(node.id, {})
                expected[node.id] = score_node(proven_slots=len(slots.get(node.id, ())),
                                               tasks_valid=o.get("valid", 0), tasks_invalid=o.get("invalid", 0),
                                               tasks_error=o.get("error", 0)).score
            got = {r.node_id: (r.score, r.amount) for r in s.scalars(select(NodeReward))}
            assert {k: v[0] for k, v in got.items()} == expected
            assert sum(v[1] for v in got.values()) == POOL == summary.distributed_amount
            assert {k: v[1] for k, v in got.items()} == largest_remainder_split(POOL, sorted(expected.items()))
    finally:
        engine.dispose()


def test_publication_is_queued_once_per_epoch_and_root(session_factory, past_days):
    from noderr_core.tables import OutboxMessage

    d1, d2, _ = past_days
    with session_factory() as s:
        _world(s, d1)
        compute_epoch(s, d1, pool=POOL)
        build_epoch_tree(s, d1)
        first = queue_root_publication(s, d1)
        s.commit()
        assert first.queued and first.idempotency_key.endswith(s.scalar(select(RewardEpoch.merkle_root)))
        # Recompute + rebuild + queue again (a retried run): the same row, nothing new.
        compute_epoch(s, d1, pool=POOL)
        build_epoch_tree(s, d1)
        again = queue_root_publication(s, d1)
        s.commit()
        assert again.outbox_id == first.outbox_id
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "chain")) == 1
        msg = s.get(OutboxMessage, first.outbox_id)
        assert msg.payload["action"] == "publish_root" and msg.payload["epoch"] == int(d1.strftime("%Y%m%d"))
        assert s.scalar(select(RewardEpoch.status)) == EpochStatus.PUBLISH_QUEUED
