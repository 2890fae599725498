"""Adaptive replication (BOINC): trusted nodes run most tasks alone, spot checks never stop."""

from __future__ import annotations

import random

from noderr_core.tasks import get_tasks, node_reliability_summary
from noderr_core.tasks.reliability import lock_reliability
from noderr_core.tasks.rules import DEFAULT_RULES
from noderr_core.timeutil import utcnow
from tests.support.task_flow import lease, report, submit


def _set_streak(session_factory, node_id, streak):
    with session_factory() as s:
        lock_reliability(s, [node_id], DEFAULT_RULES, utcnow())[node_id].consecutive_valid = streak
        s.commit()


def test_streak_is_earned_by_quorum_checked_results(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    ids = submit(session_factory, task_world.client_id, DEFAULT_RULES.adaptive_threshold)
    for n in (a, b):
        lease(session_factory, n)
    report(session_factory, a, {i: 1 for i in ids})
    report(session_factory, b, {i: 1 for i in ids})
    with session_factory() as s:
        summary = node_reliability_summary(s, a.id)
    assert summary.consecutive_valid == DEFAULT_RULES.adaptive_threshold
    assert summary.trusted


def test_unreplicated_share_follows_one_minus_one_over_streak(session_factory, task_world):
    trusted, _ = task_world.node()
    novice, _ = task_world.node()
    checker, _ = task_world.node()
    _set_streak(session_factory, trusted.id, 20)  # p(unreplicated) = 1 - 1/20 = 0.95
    _set_streak(session_factory, novice.id, DEFAULT_RULES.adaptive_threshold - 1)  # below threshold
    n = 800
    ids = submit(session_factory, task_world.client_id, n)
    rng = random.Random(1234)
    grants = []
    for _ in range(n // 64 + 1):
        grants.extend(lease(session_factory, trusted, 64, rng=rng).grants)
    assert len(grants) == n
    alone = [g.task_id for g in grants if g.unreplicated]
    # 0.95 * 800 = 760, sd ≈ 6.2: ±4 sd. The seeded RNG makes this deterministic.
    assert 735 <= len(alone) <= 785
    assert len(alone) < n  # spot checks continue

    # The unreplicated tasks validate with the trusted node's result alone, the others wait for a
    # second node; the trusted node's streak does not grow from trusted (unchecked) results.
    report(session_factory, trusted, {g.task_id: 3 for g in grants})
    with session_factory() as s:
        tasks, _ = get_tasks(s, client_id=task_world.client_id, task_ids=ids)
        s.commit()
    by_id = {t.id: t for t in tasks}
    assert all(by_id[i].status == "validated" and by_id[i].validated_by == "unreplicated" for i in alone)
    spot = [i for i in ids if i not in set(alone)]
    assert all(by_id[i].status == "in_progress" for i in spot)
    with session_factory() as s:
        assert node_reliability_summary(s, trusted.id).consecutive_valid == 20
        assert node_reliability_summary(s, trusted.id).unreplicated_count == len(alone)

    # The spot-checked tasks go to another node; no unreplicated task is offered again.
    got = lease(session_factory, checker, 1000, rng=rng).grants
    assert sorted(g.task_id for g in got) == sorted(spot)
    assert not any(g.unreplicated for g in got)

    # A node below the threshold never gets unreplicated work.
    more = submit(session_factory, task_world.client_id, 200)
    got = [g for _ in range(4) for g in lease(session_factory, novice, 64, rng=rng).grants]
    assert {g.task_id for g in got} == set(more) and not any(g.unreplicated for g in got)


def test_invalid_result_resets_streak_and_lowers_quota(session_factory, task_world):
    liar, _ = task_world.node()
    honest = [task_world.node()[0] for _ in range(2)]
    _set_streak(session_factory, liar.id, 50)
    [tid] = submit(session_factory, task_world.client_id, 1, policy={"replicas": 3, "quorum": 2, "adaptive": False})
    for n in (liar, *honest):
        lease(session_factory, n)
    report(session_factory, liar, {tid: 99})
    for n in honest:
        report(session_factory, n, {tid: 1})
    with session_factory() as s:
        summary = node_reliability_summary(s, liar.id)
    assert summary.consecutive_valid == 0
    assert summary.invalid_count == 1 and summary.last_invalid_at is not None
    assert summary.daily_quota == DEFAULT_RULES.base_daily_quota // 2
    assert not summary.trusted


def test_expired_unreplicated_lease_is_replicated_again(session_factory, task_world):
    from datetime import timedelta

    trusted, _ = task_world.node()
    other, _ = task_world.node()
    _set_streak(session_factory, trusted.id, 10_000)
    t0 = utcnow()
    [tid] = submit(session_factory, task_world.client_id, 1, now=t0)
    got = lease(session_factory, trusted, now=t0, seconds=10, rng=random.Random(5)).grants
    assert got[0].unreplicated
    # The trusted node vanished; the task returns to its full policy for an untrusted node.
    later = t0 + timedelta(seconds=11)
    got = lease(session_factory, other, now=later).grants
    assert [g.task_id for g in got] == [tid] and not got[0].unreplicated
    report(session_factory, other, {tid: 1}, now=later)
    with session_factory() as s:
        [t], _ = get_tasks(s, client_id=task_world.client_id, task_ids=[tid], now=later)
    assert t.status == "in_progress" and t.replicas_needed == 2
