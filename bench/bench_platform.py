"""Platform benchmarks: observability overhead, node health sweep, /metrics scrape (PostgreSQL).

Each figure has a baseline measured in the same run:
- API requests/s through the observability middleware (request id, metrics, JSON access log)
  vs the same app without it (in-process ASGI, so only the middleware differs);
- nodes/s taken offline by `apply_node_health` (set-based; every node of its own operator) vs raw
  SQL statements per node (the older per-node design: 2 audit rows and 2 emails per node);
- /metrics scrape time (business gauges) vs the three raw GROUP BY queries behind it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from bench.common import BenchContext, BenchRow, median
from noderr_core.audit import Actor
from noderr_core.db import make_engine, make_session_factory
from noderr_core.migrations import upgrade_database
from noderr_core.tables import AdminUser, Node, NodeStatus, Operator
from noderr_core.network import apply_node_health
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow
from noderr_local.postgres import PostgresCluster

AREA = "platform"


def _plain_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/items/{item_id}")
    def item(item_id: str) -> dict:
        return {"id": item_id}

    return app


async def _drive(app: FastAPI, n: int, concurrency: int = 20) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for i in range(50):  # warm-up
            await client.get(f"/v1/items/w{i}")
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                r = await client.get(f"/v1/items/{i}")
                assert r.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


def bench_observability_overhead(ctx: BenchContext) -> BenchRow:
    from api.observability import configure_logging, install_observability

    n = 1_000 if ctx.quick else 10_000
    settings = Settings(env="test", state_dir=ctx.workdir / "state", log_json=True)
    root = logging.getLogger()
    saved_level = root.level
    handler = configure_logging(settings, stream=io.StringIO())  # JSON lines, like production
    try:
        instrumented = _plain_app()
        install_observability(instrumented, settings)
        bare = _plain_app()
        with_mw, without = [], []
        for _ in range(3):  # interleaved rounds: both see the same machine load
            without.append(asyncio.run(_drive(bare, n)))
            with_mw.append(asyncio.run(_drive(instrumented, n)))
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
    return BenchRow(
        area=AREA, figure=f"API req/s with observability middleware (ASGI, n={n})",
        value=median(with_mw), unit="req/s", baseline_figure="same app without the middleware",
        baseline_value=median(without), higher_is_better=True,
        notes="request id + Prometheus counter/histogram + one JSON access line per request",
    )


def _seed_stale_nodes(session_factory, count: int) -> list[str]:
    long_ago = utcnow() - timedelta(hours=2)
    ids = []
    with session_factory() as s:
        s.add(AdminUser(email=f"admin-{secrets.token_hex(3)}@bench.example", password_hash="-"))
        for i in range(count):
            op = Operator(email=f"op-{secrets.token_hex(6)}@bench.example", full_name=f"Op {i}",
                          wallet_address="0x" + secrets.token_hex(20))
            s.add(op)
            s.flush()
            node = Node(id=f"node_{secrets.token_hex(8)}", operator_id=op.id,
                        status=NodeStatus.ONLINE, api_key_id=secrets.token_hex(8),
                        api_key_hash=secrets.token_hex(32), last_heartbeat_at=long_ago)
            s.add(node)
            ids.append(node.id)
        s.commit()
    return ids


_RAW_OFFLINE = [
    text("UPDATE nodes SET status='offline', status_reason='stale' WHERE id=:id AND "
         "status='online' AND last_heartbeat_at < :cutoff"),
    text("INSERT INTO alerts (kind, node_id, opened_at, details) VALUES "
         "('node_offline', :id, :now, '{}') RETURNING id"),
    text("INSERT INTO audit_log (at, actor_type, action, subject_type, subject_id, details) "
         "VALUES (:now, 'pipeline', :action, 'node', :id, '{}')"),
    text("INSERT INTO outbox (kind, idempotency_key, payload, status, attempts, max_attempts, "
         "next_attempt_at, created_at) VALUES ('email', :key, :payload, 'pending', 0, 12, :now, :now) "
         "ON CONFLICT (idempotency_key) DO NOTHING"),
]


def _raw_sql_offline(engine, node_ids: list[str]) -> float:
    now = utcnow().replace(tzinfo=None)
    cutoff = now - timedelta(seconds=120)
    started = time.perf_counter()
    with engine.begin() as conn:
        for node_id in node_ids:
            if conn.execute(_RAW_OFFLINE[0], {"id": node_id, "cutoff": cutoff}).rowcount != 1:
                continue
            alert_id = conn.execute(_RAW_OFFLINE[1], {"id": node_id, "now": now}).scalar_one()
            for action in ("node.offline", "alert.opened"):
                conn.execute(_RAW_OFFLINE[2], {"id": node_id, "now": now, "action": action})
            for who in ("operator", "admin"):
                payload = json.dumps({"template": "node_offline", "to": f"{who}@x", "context": {}})
                conn.execute(_RAW_OFFLINE[3], {"key": f"raw:{alert_id}:{who}", "payload": payload,
                                               "now": now})
    return len(node_ids) / (time.perf_counter() - started)


def bench_health_sweep(ctx: BenchContext, cluster: PostgresCluster) -> BenchRow:
    count = 200 if ctx.quick else 2_000
    rates, raw_rates = [], []
    settings = Settings(env="test", state_dir=ctx.workdir / "state")
    for round_no in range(2):
        for kind in ("core", "raw"):
            name = f"health_{kind}_{round_no}"
            cluster.admin_execute(f"CREATE DATABASE {name} TEMPLATE noderr_template")
            engine = make_engine(cluster.url(name))
            try:
                factory = make_session_factory(engine)
                node_ids = _seed_stale_nodes(factory, count)
                if kind == "raw":
                    raw_rates.append(_raw_sql_offline(engine, node_ids))
                    continue
                started = time.perf_counter()
                with factory() as s:
                    report = apply_node_health(
                        s, node_ids=node_ids, alert_ids=[], offline_after_seconds=120,
                        settings=settings, actor=Actor.pipeline("bench"),
                    )
                    s.commit()
                rates.append(count / (time.perf_counter() - started))
                # Each node has its own operator (one single-node email each); the admin gets one digest.
                assert len(report.marked_offline) == count and report.emails_queued == count + 1
            finally:
                engine.dispose()
    return BenchRow(
        area=AREA, figure=f"health job: nodes taken offline/s (PG, {count} stale)",
        value=median(rates), unit="nodes/s",
        baseline_figure="raw SQL, per-node statements",
        baseline_value=median(raw_rates), higher_is_better=True,
        notes="ours (set-based): UPDATE…RETURNING, alerts and 1 audit row/node by INSERT…SELECT, 1 email per "
              "operator (each runs one node) + 1 admin digest in one INSERT; raw: per node UPDATE, alert, 2 "
              "audit rows, 2 emails (the per-node design, more writes than ours); see bench_health for 10,000",
    )


def bench_metrics_scrape(ctx: BenchContext, cluster: PostgresCluster) -> BenchRow:
    from api.observability import install_observability

    count = 1_000 if ctx.quick else 20_000
    cluster.admin_execute("CREATE DATABASE metrics_bench TEMPLATE noderr_template")
    engine = make_engine(cluster.url("metrics_bench"))
    try:
        factory = make_session_factory(engine)
        _seed_stale_nodes(factory, count)
        settings = Settings(env="test", state_dir=ctx.workdir / "state")
        app = FastAPI()
        app.state.session_factory = factory
        metrics = install_observability(app, settings)
        from prometheus_client import generate_latest

        scrape, raw = [], []
        queries = [
            text("SELECT status, count(*) FROM nodes GROUP BY status"),
            text("SELECT count(*) FROM alerts WHERE closed_at IS NULL"),
            text("SELECT kind, status, count(*) FROM outbox WHERE status IN "
                 "('pending','sending','failed') GROUP BY kind, status"),
        ]
        for _ in range(5 if ctx.quick else 20):
            started = time.perf_counter()
            generate_latest(metrics.registry)
            scrape.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with engine.connect() as conn:
                for q in queries:
                    conn.execute(q).all()
            raw.append((time.perf_counter() - started) * 1000)
    finally:
        engine.dispose()
    return BenchRow(
        area=AREA, figure=f"/metrics scrape incl. business gauges ({count} nodes)",
        value=median(scrape), unit="ms", baseline_figure="the 3 raw GROUP BY queries",
        baseline_value=median(raw), higher_is_better=False,
    )


def run(ctx: BenchContext) -> list[BenchRow]:
    rows = [bench_observability_overhead(ctx)]
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-pg-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root)
    try:
        cluster.start()
        cluster.admin_execute("CREATE DATABASE noderr_template")
        upgrade_database(cluster.url("noderr_template"))
        rows.append(bench_health_sweep(ctx, cluster))
        rows.append(bench_metrics_scrape(ctx, cluster))
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows
