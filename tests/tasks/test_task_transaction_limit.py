"""A worker runs at most `api_max_task_transactions` task-protocol transactions at once; the other
requests wait their turn (without a thread) and are all answered."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

import api.deps
from noderr_core.settings import Settings
from tests.support.task_flow import submit

LEASE = {"max_tasks": 4, "models": [{"name": "iris", "version": 1}], "lease_seconds": 120}


def test_task_transactions_beyond_the_limit_wait_their_turn(db_url, tmp_path, session_factory, task_world,
                                                             monkeypatch):
    from api.main import create_app

    keys = [task_world.node()[1] for _ in range(8)]
    submit(session_factory, task_world.client_id, 64)
    running, most, lock = 0, 0, threading.Lock()
    real_transaction = api.deps.transaction

    def observed(session_factory, work, *args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # long enough for the other requests to arrive meanwhile
            return real_transaction(session_factory, work, *args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(api.deps, "transaction", observed)
    app = create_app(Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                              api_max_task_transactions=2))
    with TestClient(app) as http, ThreadPoolExecutor(len(keys)) as pool:
        answers = list(pool.map(
            lambda key: http.post("/v1/tasks/lease", json=LEASE, headers={"Authorization": f"Bearer {key}"}),
            keys))
    assert [a.status_code for a in answers] == [200] * len(keys)
    assert sum(len(a.json()["tasks"]) for a in answers) == 4 * len(keys)
    assert most == 2
