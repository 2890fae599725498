"""Queue + quorum rules on SQLite and PostgreSQL: what clients and nodes observe."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from noderr_core.tables.tasks import NodeReliability, TaskAssignment
from noderr_core.tasks import get_tasks, node_reliability_summary
from noderr_core.tasks.comparison import outputs_agree
from noderr_core.timeutil import utcnow
from tests.support.task_flow import lease, report, submit


def _task(session_factory, world, tid):
    with session_factory() as s:
        tasks, missing = get_tasks(s, client_id=world.client_id, task_ids=[tid])
        s.commit()
    assert not missing
    return tasks[0]


def test_two_nodes_of_distinct_operators_validate_a_task(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    [tid] = submit(session_factory, task_world.client_id)
    assert _task(session_factory, task_world, tid).status == "queued"

    got_a = lease(session_factory, a)
    assert [g.task_id for g in got_a.grants] == [tid]
    assert got_a.grants[0].inputs == {"input": [[5.1, 3.5, 1.4, 0.2]]}
    # A node never gets two replicas of one task, even when asking again.
    assert lease(session_factory, a).grants == []
    got_b = lease(session_factory, b)
    assert [g.task_id for g in got_b.grants] == [tid]
    # Both replicas are out: nobody else gets it.
    c, _ = task_world.node()
    assert lease(session_factory, c).grants == []

    assert report(session_factory, a, {tid: 0.5}) == {tid: ("accepted", None)}
    assert _task(session_factory, task_world, tid).status == "in_progress"
    assert report(session_factory, b, {tid: 0.50000001}) == {tid: ("accepted", None)}
    t = _task(session_factory, task_world, tid)
    assert t.status == "validated"
    assert t.validated_by == "quorum"
    assert sorted(t.agreeing_node_ids) == sorted([a.id, b.id])
    assert t.result == {"label": [0.5]}
    assert t.results_received == 2
    assert node_reliability_summary_via(session_factory, a.id).valid_count == 1


def node_reliability_summary_via(session_factory, node_id):
    with session_factory() as s:
        return node_reliability_summary(s, node_id)


def test_replicas_go_to_distinct_operators(session_factory, task_world):
    a, _ = task_world.node()
    with session_factory() as s:
        from noderr_core.tables import Operator

        op = s.get(Operator, a.operator_id)
        s.expunge(op)
    sibling, _ = task_world.node(operator=op)
    [tid] = submit(session_factory, task_world.client_id)
    assert [g.task_id for g in lease(session_factory, a).grants] == [tid]
    assert lease(session_factory, sibling).grants == []  # same operator as a's live replica
    b, _ = task_world.node()
    assert [g.task_id for g in lease(session_factory, b).grants] == [tid]


def test_disagreement_adds_replicas_then_fails_with_reason(session_factory, task_world):
    nodes = [task_world.node()[0] for _ in range(4)]
    [tid] = submit(session_factory, task_world.client_id, policy={"replicas": 2, "quorum": 2, "max_replicas": 3})
    for n in nodes[:2]:
        assert len(lease(session_factory, n).grants) == 1
    report(session_factory, nodes[0], {tid: 1})
    report(session_factory, nodes[1], {tid: 2})
    t = _task(session_factory, task_world, tid)
    assert t.status == "in_progress" and t.replicas_needed == 3
    assert len(lease(session_factory, nodes[2]).grants) == 1
    report(session_factory, nodes[2], {tid: 3})
    t = _task(session_factory, task_world, tid)
    assert t.status == "failed"
    assert "no quorum" in t.fail_reason and "max_replicas 3" in t.fail_reason
    assert lease(session_factory, nodes[3]).grants == []
    with session_factory() as s:
        outcomes = set(s.scalars(select(TaskAssignment.outcome).where(TaskAssignment.task_id == tid)))
    assert outcomes == {"inconclusive"}


def test_third_replica_breaks_a_tie_and_the_outlier_is_invalid(session_factory, task_world):
    nodes = [task_world.node()[0] for _ in range(3)]
    [tid] = submit(session_factory, task_world.client_id, policy={"replicas": 2, "quorum": 2, "max_replicas": 3})
    lease(session_factory, nodes[0]); lease(session_factory, nodes[1])  # noqa: E702
    report(session_factory, nodes[0], {tid: 7})
    report(session_factory, nodes[1], {tid: 9})
    lease(session_factory, nodes[2])
    report(session_factory, nodes[2], {tid: 7})
    t = _task(session_factory, task_world, tid)
    assert t.status == "validated" and sorted(t.agreeing_node_ids) == sorted([nodes[0].id, nodes[2].id])
    with session_factory() as s:
        rel = s.get(NodeReliability, nodes[1].id)
        assert (rel.invalid_count, rel.consecutive_valid) == (1, 0)
        assert s.get(NodeReliability, nodes[0].id).consecutive_valid == 1


def test_tolerance_is_per_element_and_labels_must_match():
    assert outputs_agree({"p": [[0.1, 0.9]]}, {"p": [[0.1 + 1e-5, 0.9]]}, 1e-4)
    assert not outputs_agree({"p": [[0.1, 0.9]]}, {"p": [[0.1, 0.9 + 1e-3]]}, 1e-4)
    assert not outputs_agree({"label": ["setosa"]}, {"label": ["versicolor"]}, 1.0)
    assert not outputs_agree({"label": [1]}, {"label": [2]}, 0.5)
    assert not outputs_agree({"label": [1]}, {"other": [1]}, 0.5)
    assert not outputs_agree({"p": [[0.1, 0.9]]}, {"p": [[0.1]]}, 1.0)  # shape differs
    assert outputs_agree({"zip": [{"a": 0.25, "b": 0.75}]}, {"zip": [{"a": 0.25, "b": 0.75}]}, 0.0)
    assert not outputs_agree({"label": ["1"]}, {"label": [1]}, 0.0)  # a label is not a number


def test_duplicate_refused_and_late_results(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    c, _ = task_world.node()
    t0 = utcnow()
    [tid, tid2] = submit(session_factory, task_world.client_id, 2, now=t0)
    # A node reporting a task it never leased is refused.
    assert report(session_factory, a, {tid: 1}, now=t0)[tid] == ("refused", "this node never leased the task")
    lease(session_factory, a, seconds=30, now=t0)
    lease(session_factory, b, seconds=30, now=t0)
    assert report(session_factory, a, {tid: 1}, now=t0)[tid][0] == "accepted"
    assert report(session_factory, a, {tid: 1}, now=t0)[tid][0] == "duplicate"

    later = t0 + timedelta(seconds=60)  # both of b's leases have expired
    # tid2: b's replica is re-leased to c, so b's late result is refused...
    got = lease(session_factory, c, now=later)
    assert {g.task_id for g in got.grants} == {tid, tid2}
    acks = report(session_factory, b, {tid: 1, tid2: 1}, now=later + timedelta(seconds=1))
    assert acks[tid] == ("refused", "lease expired and the replica was given to another node")
    assert acks[tid2] == ("refused", "lease expired and the replica was given to another node")
    # ... and c completes tid with a; it is counted once.
    report(session_factory, c, {tid: 1}, now=later)
    t = _task(session_factory, task_world, tid)
    assert t.status == "validated" and sorted(t.agreeing_node_ids) == sorted([a.id, c.id])


def test_late_result_accepted_while_nobody_took_the_replica(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    t0 = utcnow()
    [tid] = submit(session_factory, task_world.client_id, now=t0)
    lease(session_factory, a, seconds=30, now=t0)
    lease(session_factory, b, seconds=30, now=t0)
    report(session_factory, a, {tid: 4}, now=t0)
    late = t0 + timedelta(minutes=5)
    assert report(session_factory, b, {tid: 4}, now=late)[tid] == ("accepted", None)
    assert _task(session_factory, task_world, tid).status == "validated"


def test_expired_lease_is_leasable_again_without_a_sweeper(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    t0 = utcnow()
    ids = submit(session_factory, task_world.client_id, 3, policy={"replicas": 1, "quorum": 1}, now=t0)
    assert len(lease(session_factory, a, seconds=10, now=t0).grants) == 3
    assert lease(session_factory, b, now=t0 + timedelta(seconds=5)).grants == []
    regained = lease(session_factory, b, now=t0 + timedelta(seconds=11))
    assert sorted(g.task_id for g in regained.grants) == sorted(ids)


def test_errors_free_the_slot_then_fail_the_task(session_factory, task_world):
    nodes = [task_world.node()[0] for _ in range(3)]
    [tid] = submit(session_factory, task_world.client_id, policy={"replicas": 1, "quorum": 1, "max_replicas": 2})
    lease(session_factory, nodes[0])
    assert report(session_factory, nodes[0], {tid: None}, error="onnxruntime: bad input")[tid][0] == "accepted"
    assert _task(session_factory, task_world, tid).status == "in_progress"
    assert len(lease(session_factory, nodes[1]).grants) == 1
    report(session_factory, nodes[1], {tid: None}, error="onnxruntime: bad input again")
    t = _task(session_factory, task_world, tid)
    assert t.status == "failed" and "2 nodes reported errors" in t.fail_reason
    assert "bad input again" in t.fail_reason


def test_deadline_fails_undecided_tasks(session_factory, task_world):
    a, _ = task_world.node()
    t0 = utcnow()
    [tid] = submit(session_factory, task_world.client_id, deadline=t0 + timedelta(seconds=30), now=t0)
    assert lease(session_factory, a, now=t0 + timedelta(seconds=31)).grants == []
    t = _task(session_factory, task_world, tid)
    assert t.status == "failed" and "deadline" in t.fail_reason


def test_result_after_the_deadline_is_refused(session_factory, task_world):
    a, _ = task_world.node()
    t0 = utcnow()
    [tid] = submit(session_factory, task_world.client_id, deadline=t0 + timedelta(seconds=30), now=t0,
                   policy={"replicas": 1, "quorum": 1})
    lease(session_factory, a, now=t0, seconds=600)
    ack = report(session_factory, a, {tid: 1}, now=t0 + timedelta(seconds=31))
    assert ack[tid][0] == "refused" and "deadline" in ack[tid][1]
    assert _task(session_factory, task_world, tid).status == "failed"


def test_priority_then_age(session_factory, task_world):
    a, _ = task_world.node()
    t0 = utcnow()
    old_low = submit(session_factory, task_world.client_id, 1, now=t0)
    new_high = submit(session_factory, task_world.client_id, 1, priority=5, now=t0 + timedelta(seconds=1))
    newer_low = submit(session_factory, task_world.client_id, 1, now=t0 + timedelta(seconds=2))
    t3 = t0 + timedelta(seconds=3)
    got = lease(session_factory, a, 2, now=t3)
    assert [g.task_id for g in got.grants] == new_high + old_low
    assert [g.task_id for g in lease(session_factory, a, 5, now=t3).grants] == newer_low


def test_release_and_extend(session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    t0 = utcnow()
    ids = submit(session_factory, task_world.client_id, 2, policy={"replicas": 1, "quorum": 1}, now=t0)
    lease(session_factory, a, seconds=10, now=t0)
    from noderr_core.tasks import extend_leases, release_tasks

    with session_factory() as s:
        out = extend_leases(s, node_id=a.id, task_ids=[ids[0], "t_nope"], lease_seconds=600, now=t0)
        s.commit()
    assert out.extended == [ids[0]] and out.refused == {"t_nope": "unknown task"}
    with session_factory() as s:
        out = release_tasks(s, node_id=a.id, task_ids=[ids[1]], now=t0)
        s.commit()
    assert out.released == [ids[1]]
    # The released one is leasable at once; the extended one still held after its first expiry.
    got = lease(session_factory, b, now=t0 + timedelta(seconds=20))
    assert [g.task_id for g in got.grants] == [ids[1]]
    assert report(session_factory, a, {ids[1]: 1}, now=t0)[ids[1]] == ("refused", "this node released the task")


def test_blocked_node_gets_no_work_and_says_why(session_factory, task_world):
    from noderr_core.tasks.rules import ReliabilityRules

    rules = ReliabilityRules(block_after_consecutive_invalid=2)
    bad, _ = task_world.node()
    good = [task_world.node()[0] for _ in range(2)]
    ids = submit(session_factory, task_world.client_id, 2, policy={"replicas": 3, "quorum": 2})
    for n in [bad, *good]:
        lease(session_factory, n, rules=rules)
    report(session_factory, bad, {i: 666 for i in ids}, rules=rules)
    for n in good:
        report(session_factory, n, {i: 1 for i in ids}, rules=rules)
    summary = node_reliability_summary_via(session_factory, bad.id)
    assert summary.invalid_count == 2 and summary.blocked_reason
    assert "2 invalid results in a row" in summary.blocked_reason
    assert summary.daily_quota < rules.base_daily_quota
    submit(session_factory, task_world.client_id, 1)
    out = lease(session_factory, bad, rules=rules)
    assert out.grants == [] and "blocked" in out.notice


def test_replicas_agree_only_within_one_model_version(session_factory, task_world):
    """During a canary, a v2 answer never joins a v1 answer's quorum, and is not held against its
    node: it is inconclusive, not invalid."""
    nodes = [task_world.node()[0] for _ in range(3)]
    [tid] = submit(session_factory, task_world.client_id, policy={"replicas": 2, "quorum": 2, "max_replicas": 3})
    lease(session_factory, nodes[0]); lease(session_factory, nodes[1])  # noqa: E702
    report(session_factory, nodes[0], {tid: 7}, version=1)
    report(session_factory, nodes[1], {tid: 7}, version=2)  # same answer, other version
    t = _task(session_factory, task_world, tid)
    assert t.status == "in_progress" and t.replicas_needed == 3
    lease(session_factory, nodes[2])
    report(session_factory, nodes[2], {tid: 7}, version=1)
    t = _task(session_factory, task_world, tid)
    assert t.status == "validated" and sorted(t.agreeing_node_ids) == sorted([nodes[0].id, nodes[2].id])
    with session_factory() as s:
        outcome = s.scalar(select(TaskAssignment.outcome).where(
            TaskAssignment.task_id == tid, TaskAssignment.node_id == nodes[1].id))
        assert outcome == "inconclusive"
        assert s.get(NodeReliability, nodes[1].id).invalid_count == 0
