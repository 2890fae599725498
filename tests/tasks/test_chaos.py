"""Chaos: 100,000 tasks on PostgreSQL, node processes SIGKILLed mid-lease, duplicate and late
submissions, one lying node. Every task ends validated or failed exactly once, none is lost, no
result is counted twice — and the test counts it.

The node processes call the core functions directly against PostgreSQL (the API is a thin adapter
over them, exercised in test_task_api.py), which keeps 200k+ results within a few minutes on two
cores. NODERR_CHAOS_TASKS overrides the size for a quick local run.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import Operator
from noderr_core.tables.tasks import NodeReliability, Task, TaskAssignment
from noderr_core.audit import Actor
from noderr_core.tasks import create_client, submit_tasks
from noderr_protocol.tasks import SubmitTasksRequest
from tests.support.factories import make_node
from tests.support.tasks import publish_test_model
from tests.support.task_workers import chaos_node

N_TASKS = int(os.environ.get("NODERR_CHAOS_TASKS", "100000"))
LEASE_SECONDS = 3
# Liveness is asserted as progress, not as a wall-clock budget (a loaded machine is slow, not
# stuck): the run fails when neither a result is recorded nor a task decided during this many
# consecutive one-second polls — far longer than a lease, so lapsed leases have been re-leased.
STALL_POLLS = 120


def _seed(factory, client_id: int, n: int) -> None:
    chunk = 10_000
    for start in range(0, n, chunk):
        # Half the tasks allow adaptive replication, half are always checked by a quorum.
        body = {"tasks": [{"model": "iris", "inputs": {"input": [[float(i), 1.0, 2.0, 3.0]]},
                           "priority": i % 3,
                           "policy": {"replicas": 2, "quorum": 2, "max_replicas": 4, "adaptive": i % 2 == 0}}
                          for i in range(start, min(n, start + chunk))]}
        with factory() as s:
            submit_tasks(s, client_id=client_id, request=SubmitTasksRequest.model_validate(body),
                         max_tasks=chunk)
            s.commit()


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a hang guard only; the liveness check is STALL_POLLS below
def test_chaos_every_task_decided_exactly_once(pg_url, tmp_path):
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        publish_test_model(s)
        client, _key = create_client(s, name="chaos", actor=Actor.system("test"))
        s.commit()
    behaviours = ["normal", "normal", "normal", "slow", "slow", "liar", "sibling"]
    nodes = []
    with factory() as s:
        for b in behaviours:
            if b == "sibling":  # a second node of the first operator: replicas must still differ
                node, _ = make_node(s, operator=s.get(Operator, nodes[0][0].operator_id))
            else:
                node, _ = make_node(s)
            nodes.append((node, b))
        s.commit()
    started = time.monotonic()
    _seed(factory, client.id, N_TASKS)
    seeded_s = time.monotonic() - started

    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, multiprocessing.Process] = {}
    logs = {i: tmp_path / f"node{i}.log" for i in range(len(nodes))}

    def start(i: int, seed: int) -> None:
        node, b = nodes[i]
        p = ctx.Process(target=chaos_node, args=(pg_url, node.id, node.operator_id, seed, str(logs[i]),
                                                 LEASE_SECONDS, "liar" if b == "liar" else
                                                 "slow" if b == "slow" else "normal"))
        p.start()
        procs[i] = p

    rng = random.Random(7)
    kills = 0
    try:
        for i in range(len(nodes)):
            start(i, seed=i)
        run_started = time.monotonic()
        kill_at = [run_started + t for t in (6, 12, 18, 24)]
        last_seen, idle_polls = None, 0
        while True:
            with factory() as s:
                open_tasks = s.scalar(select(func.count()).select_from(Task).where(Task.leasable_at.is_not(None)))
                submitted = s.scalar(select(func.count()).select_from(TaskAssignment).where(
                    TaskAssignment.status == "submitted"))
            if open_tasks == 0:
                break
            idle_polls = idle_polls + 1 if (open_tasks, submitted) == last_seen else 0
            last_seen = (open_tasks, submitted)
            assert idle_polls < STALL_POLLS, (
                f"no progress in {STALL_POLLS} polls: {open_tasks} tasks still undecided")
            if kill_at and time.monotonic() >= kill_at[0]:
                kill_at.pop(0)
                victim = rng.choice([i for i, (_n, b) in enumerate(nodes) if b in ("normal", "slow")])
                os.kill(procs[victim].pid, signal.SIGKILL)  # mid-lease: it leases continuously
                procs[victim].join()
                kills += 1
                start(victim, seed=100 + kills)  # the same node comes back (container restart)
            time.sleep(1.0)
        run_s = time.monotonic() - run_started
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
            p.join()

    with factory() as s:
        status = dict(s.execute(select(Task.status, func.count()).group_by(Task.status)).all())
        # None lost: every task decided, with a decision time.
        assert sum(status.values()) == N_TASKS
        assert set(status) <= {"validated", "failed"}, status
        assert s.scalar(select(func.count()).select_from(Task).where(Task.decided_at.is_(None))) == 0

        # Quorum-validated answers are the honest ones (the liar never forms a quorum alone).
        wrong = s.execute(text(
            "SELECT count(*) FROM tasks WHERE status='validated' AND validated_by='quorum' "
            "AND CAST(CAST(result AS jsonb)->'label'->>0 AS float) "
            "<> CAST(CAST(inputs AS jsonb)->'input'->0->>0 AS float)"
        )).scalar()
        assert wrong == 0

        # Agreeing nodes are distinct, carry a valid result, and come from distinct operators.
        rows = s.execute(select(TaskAssignment.task_id, TaskAssignment.node_id, TaskAssignment.operator_id,
                                TaskAssignment.status, TaskAssignment.outcome)).all()
        by_task: dict[str, dict[str, tuple]] = {}
        for r in rows:
            by_task.setdefault(r.task_id, {})[r.node_id] = r
        for tid, agreeing in s.execute(select(Task.id, Task.agreeing_node_ids).where(Task.status == "validated")):
            assert len(agreeing) == len(set(agreeing))
            assert all(by_task[tid][n].outcome == "valid" for n in agreeing)
            assert len({by_task[tid][n].operator_id for n in agreeing}) == len(agreeing)

        # Never counted twice: each node's counters equal its recorded results.
        per_node = Counter((r.node_id, r.outcome) for r in rows if r.status == "submitted")
        submitted = Counter(r.node_id for r in rows if r.status == "submitted")
        liar_id = next(node.id for node, b in nodes if b == "liar")
        assert per_node[(liar_id, "invalid")] > 0  # the lies were caught
        for rel in s.scalars(select(NodeReliability)):
            assert rel.results_count == submitted[rel.node_id]
            assert rel.valid_count == per_node[(rel.node_id, "valid")]
            assert rel.invalid_count == per_node[(rel.node_id, "invalid")]
            assert rel.error_count == per_node[(rel.node_id, "error")]

    # Every result a node saw accepted is recorded once, even across restarts of the same node.
    acks: Counter = Counter()
    accepted_by_node: dict[int, list[str]] = {}
    for i, path in logs.items():
        lines = path.read_text().split() if path.exists() else []
        pairs = list(zip(lines[::2], lines[1::2]))
        acks.update(status_ for _t, status_ in pairs)
        accepted_by_node[i] = [t for t, st in pairs if st == "accepted"]
    for i, accepted in accepted_by_node.items():
        assert len(accepted) == len(set(accepted)), "a result was accepted twice"
        node_id = nodes[i][0].id
        assert all(by_task[t][node_id].status == "submitted" for t in accepted)
    assert acks["duplicate"] > 0 and acks["refused"] > 0  # the chaos really happened
    assert kills == 4

    print(
        f"\nchaos: {N_TASKS} tasks seeded in {seeded_s:.1f}s, decided in {run_s:.1f}s "
        f"({N_TASKS / run_s:.0f} tasks/s): {status}; acks {dict(acks)}; {kills} SIGKILLs"
    )
    engine.dispose()
