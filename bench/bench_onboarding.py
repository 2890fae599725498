"""Webhook ingestion benchmark: signed Typeform deliveries into uvicorn + PostgreSQL at concurrency 50.

Figure: requests/s and p99 latency of `POST /webhooks/typeform` (signature check, parse, insert-or-
ignore, commit) against a real uvicorn process (1 worker) on a throwaway PostgreSQL cluster.
Baseline, measured in the same run on the same cluster: the same rows written by raw psycopg2
INSERT ... ON CONFLICT DO NOTHING RETURNING id statements at concurrency 50 (50 threads, one
connection each, one commit per row) — the database's own cost of the work, with no HTTP, no
signature and no parsing. The ratio says what the HTTP + application layer costs on top of it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg2
from psycopg2.extras import Json

from bench.common import BenchContext, BenchRow, percentile
from bench.loadgen import run_open_loop
from noderr_core.migrations import upgrade_database
from noderr_core.onboarding.typeform import COLUMN_FIELDS, _column_value, load_field_map, parse_form_response
from noderr_core.timeutil import utcnow
from noderr_demo.typeform_payloads import application_payload, encode, signed_headers
from tests.support.apiserver import start_api_server
from noderr_local.postgres import PostgresCluster
from noderr_local.process import stop_process

CONCURRENCY = 50
OPEN_LOOP_RATES = (20, 50, 100)
OPEN_LOOP_SECONDS = 5.0


async def _drive_http(url: str, bodies: list[bytes]) -> tuple[float, list[float], int]:
    sem = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(body: bytes) -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                resp = await client.post("/webhooks/typeform", content=body, headers=signed_headers(body))
                latencies.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    errors += 1

        # Warm-up (connections, first-request imports) outside the measurement.
        await asyncio.gather(*[one(b) for b in bodies[:CONCURRENCY]])
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*[one(b) for b in bodies[CONCURRENCY:]])
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


_INSERT_COLUMNS = ("form_response_token", "form_id", "event_id", "submitted_at", "received_at",
                   "raw_payload", "answers", "unmapped_answers", "hidden_fields", "status",
                   "status_version", "screening_notes", "updated_at") + COLUMN_FIELDS


def _row(body: bytes) -> tuple:
    import json

    _, parsed = parse_form_response(json.loads(body), load_field_map())
    now = utcnow().replace(tzinfo=None)
    values = [parsed.token, parsed.form_id, parsed.event_id,
              parsed.submitted_at.replace(tzinfo=None) if parsed.submitted_at else None, now,
              body.decode(), Json(parsed.answers), Json(parsed.unmapped_answers), Json(parsed.hidden_fields),
              "received", 1, Json([]), now]
    values += [_column_value(f, parsed.answers.get(f)) for f in COLUMN_FIELDS]
    return tuple(values)


def _drive_raw(dsn: str, rows: list[tuple]) -> tuple[float, list[float]]:
    sql = (f"INSERT INTO operator_applications ({', '.join(_INSERT_COLUMNS)}) VALUES "
           f"({', '.join(['%s'] * len(_INSERT_COLUMNS))}) "
           "ON CONFLICT (form_response_token) DO NOTHING RETURNING id")
    local = threading.local()
    conns: list = []
    lock = threading.Lock()

    def conn():
        if not hasattr(local, "conn"):
            local.conn = psycopg2.connect(dsn)
            with lock:
                conns.append(local.conn)
        return local.conn

    latencies: list[float] = []

    def one(row: tuple) -> None:
        c = conn()
        t0 = time.perf_counter()
        with c.cursor() as cur:
            cur.execute(sql, row)
            cur.fetchone()
        c.commit()
        latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, rows[:CONCURRENCY]))  # warm-up: open the 50 connections
        latencies.clear()
        started = time.perf_counter()
        list(pool.map(one, rows[CONCURRENCY:]))
        elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return elapsed, latencies


def run(ctx: BenchContext) -> list[BenchRow]:
    n = 300 if ctx.quick else 3000
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root)
    server = None
    try:
        cluster.start()
        cluster.admin_execute("CREATE DATABASE bench_api")
        cluster.admin_execute("CREATE DATABASE bench_raw")
        api_url, raw_url = cluster.url("bench_api"), cluster.url("bench_raw")
        upgrade_database(api_url)
        upgrade_database(raw_url)
        bodies = [encode(application_payload()) for _ in range(n + CONCURRENCY)]
        rows = [_row(b) for b in bodies]

        server = start_api_server(api_url, ctx.workdir / "api")
        elapsed, latencies, errors = asyncio.run(_drive_http(server.url, bodies))
        if errors:
            raise RuntimeError(f"{errors} webhook deliveries did not answer 200; see {server.log_path}")
        # Open loop (bench/loadgen.py, its own process): latency from each delivery's due time,
        # so it measures the service, not the queue a closed loop builds at c=50.
        open_loop = {}
        for rate in OPEN_LOOP_RATES:
            fresh = [encode(application_payload()) for _ in range(int(rate * OPEN_LOOP_SECONDS))]
            res = run_open_loop(server.url, "/webhooks/typeform", [(b, signed_headers(b)) for b in fresh],
                                rate=rate, duration=OPEN_LOOP_SECONDS)
            open_loop[rate] = res
        stop_process(server.proc)
        server = None

        dsn = raw_url.replace("postgresql+psycopg2://", "postgresql://")
        raw_elapsed, raw_latencies = _drive_raw(dsn, rows)
    finally:
        if server is not None:
            stop_process(server.proc)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    note = f"{n} signed deliveries, 1 uvicorn worker, PostgreSQL fsync=off; baseline = raw psycopg2 INSERTs of the same rows"
    open_rows = []
    for rate, res in open_loop.items():
        ok = res.statuses.get(200, 0)
        open_rows += [
            BenchRow("onboarding", f"webhook open loop {rate}/s: p50 latency", percentile(res.latencies_ms, 50), "ms",
                     f"raw psycopg2 INSERT p50 (c={CONCURRENCY})", percentile(raw_latencies, 50) * 1000, False,
                     f"{ok}/{res.sent} answered 200 in {OPEN_LOOP_SECONDS:.0f}s; generator CPU share "
                     f"{res.generator_cpu_share:.2f} of a core"),
            BenchRow("onboarding", f"webhook open loop {rate}/s: p99 latency", percentile(res.latencies_ms, 99), "ms",
                     f"raw psycopg2 INSERT p99 (c={CONCURRENCY})", percentile(raw_latencies, 99) * 1000, False, ""),
        ]
    return open_rows + [
        BenchRow("onboarding", f"webhook ingest req/s (uvicorn+PG, c={CONCURRENCY})", n / elapsed, "req/s",
                 f"raw psycopg2 INSERT rows/s (c={CONCURRENCY})", n / raw_elapsed, True, note),
        BenchRow("onboarding", f"webhook ingest p99 latency (c={CONCURRENCY})", percentile(latencies, 99) * 1000,
                 "ms", f"raw psycopg2 INSERT p99 (c={CONCURRENCY})", percentile(raw_latencies, 99) * 1000,
                 False, ""),
    ]
