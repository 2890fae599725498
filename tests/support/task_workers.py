"""Node processes for the concurrency and chaos tests: they call the core functions directly
against the shared database (each process has its own engine), as API workers would."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path


def lease_until_empty(db_url: str, node_id: str, operator_id: int, batch: int, out_path: str,
                      start) -> None:
    """Lease (never report) until the queue has nothing for this node; write what it got."""
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.tasks import lease_tasks

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    got: list[str] = []
    with engine.connect():  # connect before the barrier: only leasing is raced
        pass
    # Start together (a multiprocessing.Barrier, not a wall-clock time: on a loaded machine a
    # spawned process can need longer than any fixed delay to import) to maximise contention.
    start.wait(timeout=120)
    empty = 0
    while empty < 3:
        with factory() as s:
            out = lease_tasks(s, node_id=node_id, operator_id=operator_id, model_names=["iris"],
                              max_tasks=batch, lease_seconds=3600, rng=random.Random())
            s.commit()
        got.extend(g.task_id for g in out.grants)
        empty = empty + 1 if not out.grants else 0
    Path(out_path).write_text(json.dumps(got))
    engine.dispose()


def chaos_node(db_url: str, node_id: str, operator_id: int, seed: int, log_path: str,
               lease_seconds: int, behaviour: str) -> None:
    """A node that leases batches of 64, answers, sometimes duplicates or answers late, and logs
    each acknowledged result (fsync'd, after the commit) so the test can count what the server
    accepted. Runs until killed."""
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.tasks import lease_tasks, release_tasks, submit_results
    from noderr_protocol.work import TaskResultIn

    rng = random.Random(seed)
    engine = make_engine(db_url, pool_size=2, max_overflow=2)
    factory = make_session_factory(engine)
    held_back: list[TaskResultIn] = []
    with open(log_path, "a") as log:
        while True:  # until the test stops the process
            with factory() as s:
                out = lease_tasks(s, node_id=node_id, operator_id=operator_id, model_names=["iris"],
                                  max_tasks=64, lease_seconds=lease_seconds, rng=rng)
                s.commit()
            if not out.grants:
                if held_back:
                    results, held_back = held_back, []
                else:
                    time.sleep(0.05)
                    continue
            else:
                results = []
                for g in out.grants:
                    # The honest answer is the input's first feature (as a model would compute it).
                    label = g.inputs["input"][0][0]
                    if behaviour == "liar" and rng.random() < 0.3:
                        label = label + 1000
                    if rng.random() < 0.02:
                        results.append(TaskResultIn(task_id=g.task_id, model_version=1, error="OOM"))
                    else:
                        results.append(TaskResultIn(task_id=g.task_id, model_version=1,
                                                    outputs={"label": [label]}, duration_ms=1.0))
                if behaviour == "slow" and rng.random() < 0.5:
                    # Answer this batch after the lease has lapsed (late submissions).
                    time.sleep(lease_seconds + 0.5)
                if rng.random() < 0.1 and len(results) > 4:
                    held_back.extend(results[-4:])  # answered later again: duplicates
                if rng.random() < 0.05:
                    with factory() as s:
                        release_tasks(s, node_id=node_id, task_ids=[r.task_id for r in results[:2]])
                        s.commit()
            with factory() as s:
                acks = submit_results(s, node_id=node_id, results=results)
                s.commit()
            for a in acks:
                log.write(f"{a.task_id} {a.status}\n")
            log.flush()
            os.fsync(log.fileno())
