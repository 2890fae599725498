"""Admin dashboard: what a page costs against the raw SQL underneath it.

Against uvicorn + PostgreSQL seeded with nodes, heartbeats and applications:
- the network overview (/admin, 6 h window: node counts, task stats, three charts, rollouts)
  against its heaviest query alone (the heartbeat GROUP BY behind the charts) through psycopg2;
- the application list with a search (/admin/applications?q=...) against the same filtered
  page + count in raw SQL.
Both sides run at the same concurrency in the same run; ratios are page/s ÷ query/s.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg2
from sqlalchemy import insert

from bench.common import BenchContext, BenchRow, percentile
from noderr_core.db import make_engine, make_session_factory
from noderr_core.migrations import upgrade_database
from noderr_core.tables import Heartbeat, Node, Operator, OperatorApplication
from noderr_core.timeutil import utcnow
from tests.support.admin import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_from
from tests.support.apiserver import start_api_server
from noderr_local.postgres import PostgresCluster
from noderr_local.process import stop_process

CONCURRENCY = 4

RAW_HEARTBEAT_SQL = """
SELECT CAST(floor(extract(epoch FROM received_at) / %(bucket)s) AS INTEGER) AS b,
       count(DISTINCT node_id), count(*), avg(latency_p50_ms), avg(latency_p95_ms)
FROM heartbeats WHERE received_at >= %(start)s AND received_at <= %(end)s GROUP BY b
"""
RAW_APPLICATIONS_SQL = """
SELECT * FROM operator_applications
WHERE lower(full_name) LIKE %(q)s OR lower(email) LIKE %(q)s OR lower(wallet_address) LIKE %(q)s
ORDER BY received_at DESC, id DESC LIMIT 25;
SELECT count(*) FROM operator_applications
WHERE lower(full_name) LIKE %(q)s OR lower(email) LIKE %(q)s OR lower(wallet_address) LIKE %(q)s
"""


def _seed(url: str, *, nodes: int, minutes: int, applications: int) -> None:
    engine = make_engine(url)
    now = utcnow()
    with make_session_factory(engine)() as s:
        ops = [Operator(email=f"op{i}@bench.example", full_name=f"Operator {i}",
                        wallet_address="0x" + secrets.token_hex(20)) for i in range(nodes)]
        s.add_all(ops)
        s.flush()
        node_rows = [Node(id=f"node_{secrets.token_hex(8)}", operator_id=o.id, status="online",
                          api_key_id=secrets.token_hex(8), api_key_hash=secrets.token_hex(32),
                          last_heartbeat_at=now) for o in ops]
        s.add_all(node_rows)
        s.flush()
        beats = [
            {"node_id": n.id, "received_at": now - timedelta(seconds=30 * k), "uptime_seconds": 30.0 * k,
             "model_versions": {"iris": 1}, "inference_count": k, "tasks_done": k, "errors": 0,
             "latency_p50_ms": 10.0 + (k % 7), "latency_p95_ms": 40.0 + (k % 13)}
            for n in node_rows for k in range(minutes * 2)
        ]
        for i in range(0, len(beats), 5000):
            s.execute(insert(Heartbeat), beats[i:i + 5000])
        s.execute(insert(OperatorApplication), [
            {"form_response_token": secrets.token_hex(16), "raw_payload": "{}", "answers": {},
             "unmapped_answers": {}, "hidden_fields": {}, "screening_notes": [],
             "full_name": f"Applicant {i}", "email": f"applicant{i}@example.com",
             "wallet_address": "0x" + secrets.token_hex(20), "status": "pending_review",
             "status_version": 1, "received_at": now - timedelta(minutes=i), "updated_at": now}
            for i in range(applications)
        ])
        s.commit()
    engine.dispose()


def _drive(n: int, one) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0

    def timed(_):
        nonlocal errors
        t0 = time.perf_counter()
        ok = one()
        latencies.append(time.perf_counter() - t0)
        if not ok:
            errors += 1

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(timed, range(CONCURRENCY)))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        list(pool.map(timed, range(n)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def run(ctx: BenchContext) -> list[BenchRow]:
    nodes, minutes, apps, n = (20, 120, 300, 40) if ctx.quick else (100, 360, 5000, 200)
    root = Path(tempfile.mkdtemp(prefix="noderr-admin-pg-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root)
    server = None
    try:
        cluster.start()
        cluster.admin_execute("CREATE DATABASE bench_admin")
        url = cluster.url("bench_admin")
        upgrade_database(url)
        _seed(url, nodes=nodes, minutes=minutes, applications=apps)
        heartbeats = nodes * minutes * 2
        server = start_api_server(url, ctx.workdir / "api", env={
            "NODERR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "NODERR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD})
        with httpx.Client(base_url=server.url, timeout=60) as c:
            login = c.get("/admin/login")
            r = c.post("/admin/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                             "csrf_token": csrf_from(login.text)})
            if r.status_code != 303:
                raise RuntimeError(f"admin login failed: {r.status_code} {r.text[:300]}")
            cookies = dict(c.cookies)
        clients = {}

        def client() -> httpx.Client:
            import threading

            key = threading.get_ident()
            if key not in clients:
                clients[key] = httpx.Client(base_url=server.url, timeout=60, cookies=cookies)
            return clients[key]

        def get(path: str):
            return lambda: client().get(path).status_code == 200

        conns = {}

        def cursor():
            import threading

            key = threading.get_ident()
            if key not in conns:
                conns[key] = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
                conns[key].autocommit = True
            return conns[key].cursor()

        end = utcnow().replace(tzinfo=None)

        def raw_heartbeats():
            with cursor() as cur:
                cur.execute(RAW_HEARTBEAT_SQL, {"bucket": 720, "start": end - timedelta(hours=6),
                                                "end": end})
                cur.fetchall()
            return True

        def raw_applications():
            with cursor() as cur:
                cur.execute(RAW_APPLICATIONS_SQL, {"q": "%applicant1%"})
                cur.fetchall()
            return True

        ov_s, ov_lat, ov_err = _drive(n, get("/admin?window=6h"))
        rw_s, rw_lat, _ = _drive(n, raw_heartbeats)
        ap_s, ap_lat, ap_err = _drive(n, get("/admin/applications?q=applicant1"))
        ra_s, ra_lat, _ = _drive(n, raw_applications)
        for c in clients.values():
            c.close()
        for conn in conns.values():
            conn.close()
        note = f"{nodes} nodes, {heartbeats} heartbeats, {apps} applications, c={CONCURRENCY}"
        if ov_err or ap_err:
            note += f"; errors: overview {ov_err}, list {ap_err}"
        return [
            BenchRow("admin", "overview page req/s (uvicorn+PG, 6h)", n / ov_s, "req/s",
                     "raw heartbeat GROUP BY q/s (psycopg2)", n / rw_s, notes=note),
            BenchRow("admin", "overview page p95 ms", percentile(ov_lat, 95) * 1000, "ms",
                     "raw heartbeat GROUP BY p95 ms", percentile(rw_lat, 95) * 1000,
                     higher_is_better=False),
            BenchRow("admin", "application list+search req/s", n / ap_s, "req/s",
                     "raw page+count SQL q/s (psycopg2)", n / ra_s),
            BenchRow("admin", "application list+search p95 ms", percentile(ap_lat, 95) * 1000, "ms",
                     "raw page+count SQL p95 ms", percentile(ra_lat, 95) * 1000,
                     higher_is_better=False),
        ]
    finally:
        if server is not None:
            stop_process(server.proc)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
