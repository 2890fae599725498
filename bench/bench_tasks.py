"""Task network throughput: completed tasks/s end to end through the API, against a raw SQL
lease-and-complete loop on the same PostgreSQL in the same run.

Measured: 32 simulated nodes (asyncio httpx clients in a separate process, one per node, each of a
distinct operator) lease batches of 64 through `POST /v1/tasks/lease` and report results through
`POST /v1/tasks/results` against uvicorn (2 workers) on PostgreSQL. Every task has the policy
replicas=2, quorum=2 with adaptive replication off, so each completed task costs two leases, two
results and a quorum validation. The clock runs from the first lease to the last task validated.

Baseline: the classic SKIP LOCKED job queue in raw psycopg2 — 32 threads, each `UPDATE … WHERE id
IN (SELECT … LIMIT 64 FOR UPDATE SKIP LOCKED) RETURNING`, then one `UPDATE … FROM (VALUES …)` marking
the 64 jobs done — one completion per job, no HTTP, no replication, no validation.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bench.common import BenchContext, BenchRow

NODES = 32
BATCH = 64


def _seed(api_url: str, db_url: str, n_tasks: int) -> tuple[list[str], str]:
    """Model, client and 32 nodes in the database; tasks submitted through the client API."""
    import httpx

    from noderr_core.audit import Actor
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.tasks import create_client
    from tests.support.factories import make_node
    from tests.support.tasks import publish_test_model

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with factory() as s:
        publish_test_model(s)
        _client, client_key = create_client(s, name="bench", actor=Actor.system("bench"))
        node_keys = [make_node(s)[1] for _ in range(NODES)]
        s.commit()
    engine.dispose()
    policy = {"replicas": 2, "quorum": 2, "adaptive": False}
    with httpx.Client(base_url=api_url, timeout=120, headers={"Authorization": f"Bearer {client_key}"}) as http:
        for start in range(0, n_tasks, 1000):
            tasks = [{"model": "iris", "inputs": {"input": [[float(i), 1.0, 2.0, 3.0]]}}
                     for i in range(start, min(n_tasks, start + 1000))]
            r = http.post("/v1/tasks", json={"tasks": tasks, "policy": policy})
            r.raise_for_status()
    return node_keys, client_key


def _drive_nodes(api_url: str, node_keys: list[str], n_tasks: int, out: multiprocessing.Queue) -> None:
    """The load generator process: 32 nodes lease and report until every task is validated."""
    import httpx

    async def main() -> tuple[float, int, int]:  # noqa: C901
        done = {"results": 0, "leases": 0}
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=NODES * 2, max_keepalive_connections=NODES * 2)
        async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=limits) as http:
            async def node(key: str) -> None:
                h = {"Authorization": f"Bearer {key}"}
                body = {"max_tasks": BATCH, "models": [{"name": "iris", "version": 1}], "lease_seconds": 120}
                while not stop.is_set():
                    r = await http.post("/v1/tasks/lease", json=body, headers=h)
                    r.raise_for_status()
                    tasks = r.json()["tasks"]
                    done["leases"] += 1
                    if not tasks:
                        await asyncio.sleep(0.05)
                        continue
                    results = [{"task_id": t["task_id"], "model_version": 1,
                                "outputs": {"label": [t["inputs"]["input"][0][0]]}, "duration_ms": 0.1}
                               for t in tasks]
                    r = await http.post("/v1/tasks/results", json={"results": results}, headers=h)
                    r.raise_for_status()
                    done["results"] += sum(1 for a in r.json()["acks"] if a["status"] == "accepted")

            started = time.perf_counter()
            workers = [asyncio.create_task(node(k)) for k in node_keys]
            # Each task completes with exactly two accepted results (replicas=2, honest nodes).
            while done["results"] < 2 * n_tasks:
                await asyncio.sleep(0.02)
                for w in workers:
                    if w.done() and w.exception():
                        raise w.exception()
            elapsed = time.perf_counter() - started
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
            return elapsed, done["results"], done["leases"]

    try:
        out.put(asyncio.run(main()))
    except BaseException as exc:  # report, don't hang the parent
        out.put(RuntimeError(f"load generator failed: {exc!r}"))


def _raw_queue(dsn: str, n_jobs: int) -> float:
    """The baseline: a raw SKIP LOCKED queue, 32 threads, batches of 64."""
    import psycopg2
    from psycopg2.extras import execute_values

    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, payload json NOT NULL, "
                    "status text NOT NULL DEFAULT 'queued', leased_by int, result json)")
        cur.execute("CREATE INDEX raw_jobs_queued ON raw_jobs (id) WHERE status = 'queued'")
        execute_values(cur, "INSERT INTO raw_jobs (payload) VALUES %s",
                       [(f'{{"input": [[{i}.0, 1.0, 2.0, 3.0]]}}',) for i in range(n_jobs)], page_size=1000)
    remaining = [n_jobs]
    lock = threading.Lock()

    def worker(wid: int) -> None:
        conn = psycopg2.connect(dsn)
        cur = conn.cursor()
        while True:
            cur.execute(
                "UPDATE raw_jobs SET status = 'leased', leased_by = %s WHERE id IN (SELECT id FROM raw_jobs "
                "WHERE status = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, payload",
                (wid, BATCH),
            )
            jobs = cur.fetchall()
            conn.commit()
            if not jobs:
                with lock:
                    if remaining[0] <= 0:
                        break
                time.sleep(0.01)
                continue
            rows = [(j[0], f'{{"label": [{j[1]["input"][0][0]}]}}') for j in jobs]
            execute_values(cur, "UPDATE raw_jobs SET status = 'done', result = v.result::json "
                                "FROM (VALUES %s) AS v (id, result) WHERE raw_jobs.id = v.id", rows)
            conn.commit()
            with lock:
                remaining[0] -= len(jobs)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(NODES)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _bootstrap_admin(db_url: str) -> None:
    # Two uvicorn workers would otherwise race to create the bootstrap admin at start-up.
    from noderr_core.bootstrap import ensure_bootstrap_admin
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.settings import Settings

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        ensure_bootstrap_admin(s, Settings(env="test", database_url=db_url))
        s.commit()
    engine.dispose()


def run(ctx: BenchContext) -> list[BenchRow]:
    from tests.support.apiserver import start_api_server
    from noderr_local.postgres import PostgresCluster
    from noderr_local.process import stop_process
    from noderr_core.migrations import upgrade_database

    n_tasks = 3000 if ctx.quick else 30000
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-tasks-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root)
    server = None
    try:
        cluster.start()
        cluster.admin_execute("CREATE DATABASE bench_tasks")
        cluster.admin_execute("CREATE DATABASE bench_raw")
        db_url = cluster.url("bench_tasks")
        upgrade_database(db_url)
        _bootstrap_admin(db_url)
        server = start_api_server(db_url, ctx.workdir / "api", workers=2)
        node_keys, _client_key = _seed(server.url, db_url, n_tasks)

        mp = multiprocessing.get_context("spawn")
        q = mp.Queue()
        driver = mp.Process(target=_drive_nodes, args=(server.url, node_keys, n_tasks, q))
        driver.start()
        got = q.get(timeout=1800)
        driver.join(timeout=60)
        if isinstance(got, Exception):
            raise RuntimeError(f"{got}; API log: {server.log_path}")
        elapsed, results, leases = got
        stop_process(server.proc)
        server = None

        import psycopg2

        with psycopg2.connect(cluster.url("bench_tasks").replace("postgresql+psycopg2://", "postgresql://")) as c:
            with c.cursor() as cur:
                cur.execute("SELECT count(*) FROM tasks WHERE status = 'validated'")
                validated = cur.fetchone()[0]
        if validated != n_tasks:
            raise RuntimeError(f"only {validated} of {n_tasks} tasks validated")

        raw_elapsed = _raw_queue(cluster.url("bench_raw").replace("postgresql+psycopg2://", "postgresql://"), n_tasks)
    finally:
        if server is not None:
            stop_process(server.proc)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    note = (f"{n_tasks} tasks, replicas=2 quorum=2 (adaptive off): {results} results, {leases} lease calls; "
            f"{NODES} nodes x batches of {BATCH}; uvicorn 2 workers, PostgreSQL fsync=off, same cluster; "
            "baseline completes each job once, without HTTP, replication or validation")
    return [
        BenchRow("tasks", f"validated tasks/s via API ({NODES} nodes, batch {BATCH})", n_tasks / elapsed, "tasks/s",
                 f"raw SKIP LOCKED queue jobs/s ({NODES} thr)", n_tasks / raw_elapsed, True, note),
        BenchRow("tasks", "accepted results/s via API (2 per task)", results / elapsed, "results/s",
                 f"raw SKIP LOCKED queue jobs/s ({NODES} thr)", n_tasks / raw_elapsed, True, ""),
    ]
