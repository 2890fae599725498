"""Helpers for task tests: submit, lease and report through the core functions."""

from __future__ import annotations

import random
from datetime import datetime

from noderr_core.tasks import lease_tasks, submit_results, submit_tasks
from noderr_protocol.tasks import SubmitTasksRequest
from noderr_protocol.work import TaskResultIn

ROW = [[5.1, 3.5, 1.4, 0.2]]


def submit(session_factory, client_id: int, n: int = 1, *, policy: dict | None = None, priority: int = 0,
           deadline: datetime | None = None, now: datetime | None = None) -> list[str]:
    body = {"tasks": [{"model": "iris", "inputs": {"input": ROW}, "priority": priority,
                       **({"deadline": deadline.isoformat()} if deadline else {})} for _ in range(n)]}
    if policy:
        body["policy"] = policy
    with session_factory() as s:
        ids = submit_tasks(s, client_id=client_id, request=SubmitTasksRequest.model_validate(body), now=now,
                           max_tasks=max(n, 1))
        s.commit()
    return ids


def lease(session_factory, node, n: int = 64, *, seconds: int = 120, now=None, rng=None, rules=None,
          models=("iris",)):
    kwargs = {"rules": rules} if rules else {}
    with session_factory() as s:
        out = lease_tasks(s, node_id=node.id, operator_id=node.operator_id, model_names=list(models),
                          max_tasks=n, lease_seconds=seconds, now=now, rng=rng or random.Random(0), **kwargs)
        s.commit()
    return out


def report(session_factory, node, results: dict[str, object], *, now=None, error: str | None = None,
           rules=None, version: int = 1):
    """results: task_id -> label value (outputs {"label": [value]}), or None with error=..."""
    items = [
        TaskResultIn(task_id=tid, model_version=version, outputs=None if error else {"label": [v]},
                     error=error, duration_ms=1.0)
        for tid, v in results.items()
    ]
    kwargs = {"rules": rules} if rules else {}
    with session_factory() as s:
        acks = submit_results(s, node_id=node.id, results=items, now=now, **kwargs)
        s.commit()
    return {a.task_id: (a.status, a.reason) for a in acks}
