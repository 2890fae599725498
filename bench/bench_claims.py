"""Public claim read at 365 epochs × 1,000 wallets (SQLite), against the full-history read it replaced.

Figure: median latency of `GET /v1/rewards/claims/{wallet}` (in process, warm caches).
Baseline (same run, same data): the previous read path's core step, summing every wallet over
every epoch (`cumulative_amounts`) and reading every leaf of the published epoch, per request.
"""

from __future__ import annotations

import statistics
import time

from fastapi.testclient import TestClient

from bench.common import BenchContext, BenchRow
from noderr_core.db import make_engine, make_session_factory
from noderr_core.migrations import upgrade_database
from noderr_core.rewards.claims import latest_published_epoch
from noderr_core.rewards.tree import cumulative_amounts, load_leaves
from noderr_core.settings import Settings
from tests.support.rewards import seed_reward_history


def run(ctx: BenchContext) -> list[BenchRow]:
    from api.main import create_app

    epochs, wallets = (30, 200) if ctx.quick else (365, 1_000)
    url = f"sqlite:///{ctx.workdir / 'claims.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    t0 = time.perf_counter()
    with factory() as s:
        addresses = seed_reward_history(s, epochs=epochs, wallets=wallets)
        s.commit()
    load_s = time.perf_counter() - t0

    def old_path(wallet: str) -> float:
        started = time.perf_counter()
        with factory() as s:
            epoch = latest_published_epoch(s)
            cumulative_amounts(s, epoch.epoch_date).get(wallet, 0)
            load_leaves(s, epoch.id)
            s.rollback()
        return time.perf_counter() - started

    baseline = [old_path(addresses[i % wallets]) for i in range(10)]
    app = create_app(Settings(env="test", database_url=url, state_dir=ctx.workdir / "state"))
    samples = []
    with TestClient(app) as http:
        assert http.get(f"/v1/rewards/claims/{addresses[0]}").status_code == 200  # builds the tree
        for i in range(50):
            started = time.perf_counter()
            r = http.get(f"/v1/rewards/claims/{addresses[(i * 37) % wallets]}")
            samples.append(time.perf_counter() - started)
            assert r.status_code == 200 and r.json()["proof"]
    engine.dispose()
    return [BenchRow(
        area="rewards",
        figure=f"claim read, {epochs} epochs × {wallets} wallets, median (ms)",
        value=statistics.median(samples) * 1000, unit="ms",
        baseline_figure="full-history sum + all leaves per request (ms)",
        baseline_value=statistics.median(baseline) * 1000, higher_is_better=False,
        notes=f"seeded {epochs * wallets:,} reward rows in {load_s:.0f}s; SQLite, in process",
    )]
