"""A public claim read costs the caller's own rows, not all reward history (finding 5).

Asserted by the SQL the request sends (counted with a SQLAlchemy event), never by timing; the
latency at 365 epochs × 1,000 wallets is in bench/bench_claims.py.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from noderr_core.db import make_engine, make_session_factory
from noderr_core.settings import Settings
from tests.support.rewards import seed_reward_history

EPOCHS, WALLETS = 40, 150


@pytest.fixture
def claims_app(db_url, tmp_path):
    from api.main import create_app

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        wallets = seed_reward_history(s, epochs=EPOCHS, wallets=WALLETS)
        s.commit()
    engine.dispose()
    app = create_app(Settings(env="test", database_url=db_url, state_dir=tmp_path / "state"))
    with TestClient(app) as http:
        yield app, http, wallets


class StatementLog:
    def __init__(self, engine):
        self.statements: list[tuple[str, object]] = []
        self.engine = engine

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((" ".join(statement.split()), parameters))


def test_claim_reads_only_the_callers_rows_and_takes_no_write_lock(claims_app):
    app, http, wallets = claims_app
    first = http.get(f"/v1/rewards/claims/{wallets[0]}")
    assert first.status_code == 200
    body = first.json()
    assert body["proof"] and body["earned_total"] == str(EPOCHS * 10**18)  # wallet 0 earns 1e18 a day
    assert body["cumulative_amount"] == body["earned_total"]
    for wallet_index in (1, WALLETS // 2, WALLETS - 1):
        wallet = wallets[wallet_index]
        with StatementLog(app.state.engine) as log:
            r = http.get(f"/v1/rewards/claims/{wallet}")
        assert r.status_code == 200 and r.json()["proof"]
        assert r.json()["earned_total"] == str(EPOCHS * (10**18 + wallet_index))
        sql = [s for s, _ in log.statements]
        # No leaf is read again (the tree of the published root is cached), and every read of
        # reward rows is filtered by the caller's wallet (an index range scan).
        assert not any("FROM reward_leaves" in s for s in sql), sql
        reward_reads = [(s, p) for s, p in log.statements if "FROM operator_rewards" in s]
        assert len(reward_reads) == 1 and wallet in str(reward_reads[0][1]), reward_reads
        assert len([s for s in sql if s.startswith("SELECT")]) <= 3, sql
        # A read path never takes SQLite's write lock nor writes anything.
        assert not any(s.startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE")) for s in sql), sql


def test_operator_page_reads_only_the_wallets_rows(claims_app):
    app, http, wallets = claims_app
    http.get(f"/rewards/{wallets[0]}")  # warm the tree
    with StatementLog(app.state.engine) as log:
        page = http.get(f"/rewards/{wallets[3]}")
    assert page.status_code == 200
    for statement, params in log.statements:
        if "FROM operator_rewards" in statement or "FROM node_rewards" in statement:
            assert wallets[3] in str(params), statement
    assert not any(s.startswith("BEGIN IMMEDIATE") for s, _ in log.statements)


def test_claimed_reads_are_reused_only_once_final():
    """A wallet with something left to claim is read every time (a claim shows at once); a fully
    claimed one costs no further RPC until a new root raises its cumulative amount."""
    from api.routes.rewards import ClaimedReads

    reads = ClaimedReads(size=2)
    calls = []

    def chain(value):
        def read():
            calls.append(value)
            return value
        return read

    assert reads.get("0xA", 100, chain(40)) == 40
    assert reads.get("0xA", 100, chain(100)) == 100  # partial claim was not cached
    assert reads.get("0xA", 100, chain(999)) == 100  # final: served from the cache
    assert calls == [40, 100]
    assert reads.get("0xA", 150, chain(100)) == 100  # a new root: read again
    assert calls == [40, 100, 100]
