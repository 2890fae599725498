"""The hot path's prepared statements (PostgreSQL): behind a transaction-mode pooler (PgBouncer) they
can be turned off with the same results, and a statement the server session already holds is reused."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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


@pytest.fixture
def one_connection(db_url, task_world):
    """(a session factory over a single pooled connection, a node) after one lease prepared the hot path."""
    if not db_url.startswith("postgresql"):
        pytest.skip("prepared statements are a PostgreSQL matter")
    factory = make_session_factory(make_engine(db_url, pool_size=1, max_overflow=0))  # one connection
    node, _ = task_world.node()
    submit(factory, task_world.client_id, 4)
    assert len(lease(factory, node, 1).grants) == 1
    return factory, node


def test_a_statement_the_server_session_already_prepared_is_reused(one_connection):
    """A connection whose PREPARE outlived a failed transaction (not transactional) keeps working."""
    factory, node = one_connection
    with factory() as s:
        s.connection().connection.info.pop("noderr_prepared")  # forgotten, as after a failed transaction
        assert s.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() > 0
        s.rollback()
    assert len(lease(factory, node, 1).grants) == 1


def test_a_server_session_that_lost_its_statements_names_the_setting_and_recovers(one_connection, caplog):
    """What a transaction-mode pooler does (another server session per transaction): the failing
    transaction's error log says which setting to change, and the connection prepares again."""
    factory, node = one_connection
    with factory() as s:
        s.execute(text("DEALLOCATE ALL"))
        s.commit()
    with caplog.at_level("ERROR", logger="noderr_core.tasks.bulk"), pytest.raises(DBAPIError) as failed:
        lease(factory, node, 1)
    assert failed.value.orig.pgcode == "26000"
    assert "NODERR_DATABASE_PREPARED_STATEMENTS=false" in caplog.text
    # The next transaction on the same connection prepares again and leases.
    assert len(lease(factory, node, 1).grants) == 1
