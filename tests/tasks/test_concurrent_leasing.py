"""Many node processes leasing from one database at once: no task is held twice while leased."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter

from tests.support.task_flow import submit
from tests.support.task_workers import lease_until_empty


def _run(db_url, nodes, batch, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(nodes))
    procs = []
    for i, node in enumerate(nodes):
        p = ctx.Process(target=lease_until_empty,
                        args=(db_url, node.id, node.operator_id, batch, str(tmp_path / f"n{i}.json"), start))
        p.start()
        procs.append(p)
    try:
        for p in procs:
            p.join(timeout=180)
            assert p.exitcode == 0, f"leasing process exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return [json.loads((tmp_path / f"n{i}.json").read_text()) for i in range(len(nodes))]


def test_concurrent_processes_never_share_a_single_replica_task(db_url, session_factory, task_world, tmp_path):
    nodes = [task_world.node()[0] for _ in range(6)]
    ids = submit(session_factory, task_world.client_id, 1500, policy={"replicas": 1, "quorum": 1})
    got = _run(db_url, nodes, 32, tmp_path)
    everything = [t for per_node in got for t in per_node]
    assert len(everything) == len(set(everything)), "a task was leased twice while its lease held"
    assert set(everything) == set(ids)
    if db_url.startswith("postgresql"):
        # The work really was shared. (On SQLite writers take turns through busy-waiting on one
        # lock, so one process may drain the queue before the others win it: no fairness to test.)
        assert sum(1 for per_node in got if per_node) >= 2


def test_concurrent_processes_give_each_replica_to_a_distinct_node(db_url, session_factory, task_world, tmp_path):
    nodes = [task_world.node()[0] for _ in range(5)]
    ids = submit(session_factory, task_world.client_id, 600, policy={"replicas": 3, "quorum": 2, "adaptive": False})
    got = _run(db_url, nodes, 64, tmp_path)
    for per_node in got:
        assert len(per_node) == len(set(per_node)), "a node received two replicas of one task"
    counts = Counter(t for per_node in got for t in per_node)
    assert set(counts) == set(ids)
    assert set(counts.values()) == {3}, "a task got more or fewer replicas than its policy"
