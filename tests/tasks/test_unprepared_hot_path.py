"""Behind a transaction-mode pooler (PgBouncer) the hot path runs without SQL PREPARE, with the same results."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from noderr_core.db import make_engine, make_session_factory
from noderr_core.tasks import get_tasks
from tests.support.task_flow import lease, report, submit


def test_lease_and_results_without_prepared_statements(db_url, task_world):
    if not db_url.startswith("postgresql"):
        pytest.skip("prepared statements are a PostgreSQL matter")
    unprepared = make_session_factory(make_engine(db_url, prepared_statements=False))
    a, _ = task_world.node()
    b, _ = task_world.node()
    ids = submit(unprepared, task_world.client_id, 5)
    for n in (a, b):
        assert len(lease(unprepared, n).grants) == 5
    assert set(report(unprepared, a, dict.fromkeys(ids, 1)).values()) == {("accepted", None)}
    assert set(report(unprepared, b, dict.fromkeys(ids, 1)).values()) == {("accepted", None)}
    with unprepared() as s:
        found, missing = get_tasks(s, client_id=task_world.client_id, task_ids=ids)
        assert not missing and {t.status for t in found} == {"validated"}
        # Nothing was prepared on this engine's server sessions.
        assert s.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0
