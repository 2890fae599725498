"""Task network throughput: validated tasks/s end to end through the API, against a minimal
single-statement implementation of the same node protocol and a raw SQL queue, all in the same run
on the same PostgreSQL cluster.

The load: 32 simulated nodes (of distinct operators) in a closed loop — lease a batch of 64 through
`POST /v1/tasks/lease`, report the results through `POST /v1/tasks/results`, lease again — driven by
a raw-socket HTTP/1.1 client (bench/loadgen.py: one keep-alive connection per node, request heads
built once, orjson bodies, Content-Length framing) in a separate process, which reports its own CPU
share so a figure can show the generator was not the limit. Every task has the policy replicas=2,
quorum=2 with adaptive replication off, so each validated task costs two leases, two results and a
quorum decision. The clock runs from the first lease to the last result needed (2 accepted per task);
at the end every task must be validated in the database.

1. The API: uvicorn (2 workers) on its own database, seeded with the test factories and tasks
   submitted through the client API (`POST /v1/tasks`). Only the HTTP protocol is used, so the
   figure follows whatever the API does inside.
2. The ceiling: bench/minimal_tasks.py — the same requests and response shapes served by a tiny
   Starlette + orjson app under uvicorn (2 workers) on its own minimal schema in its own database:
   one statement to lease, one lock plus one statement to record results with a plain quorum-of-2
   equality check (psycopg2 in a threadpool). It leaves out lease-expiry re-leasing, tolerance,
   deadlines, adaptive replication, the distinct-operator rule and reliability: a ceiling, not a
   design. The goal is API >= 0.8x of it.
3. The floor of database work: the classic SKIP LOCKED job queue in raw psycopg2 — 32 threads, each
   `UPDATE … WHERE id IN (SELECT … LIMIT 64 FOR UPDATE SKIP LOCKED) RETURNING`, then one `UPDATE … FROM
   (VALUES …)` marking the 64 jobs done — one completion per job, no HTTP, no replication, no
   validation.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchContext, BenchRow

NODES = 32
BATCH = 64
GENERATOR_PROCESSES = 1  # nodes are split between them; one has been far from busy
EMPTY_LEASE_WAIT = 0.02  # seconds a node waits after an empty lease before asking again
LEASE_BODY = {"max_tasks": BATCH, "models": [{"name": "iris", "version": 1}], "lease_seconds": 120}


def _inputs(i: int) -> dict:
    return {"input": [[float(i), 1.0, 2.0, 3.0]]}


def _seed_api(api_url: str, db_url: str, n_tasks: int) -> list[str]:
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
            tasks = [{"model": "iris", "inputs": _inputs(i)} for i in range(start, min(n_tasks, start + 1000))]
            r = http.post("/v1/tasks", json={"tasks": tasks, "policy": policy})
            r.raise_for_status()
    return node_keys


def _seed_minimal(dsn: str, node_keys: list[str], n_tasks: int) -> None:
    """The minimal app's schema, the same node keys, and the same tasks (2 replicas each)."""
    import orjson
    import psycopg2
    from psycopg2.extras import execute_values

    from bench.minimal_tasks import create_schema

    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        create_schema(cur, node_keys)
        execute_values(cur, "INSERT INTO m_tasks (model_name, inputs, open_replicas) VALUES %s",
                       [("iris", orjson.dumps(_inputs(i)).decode(), 2) for i in range(n_tasks)], page_size=1000)
    c = psycopg2.connect(dsn)
    c.autocommit = True
    c.cursor().execute("VACUUM ANALYZE")
    c.close()


# ---- the load generator (its own process) ------------------------------------------------------


@dataclass
class DriveResult:
    started: float  # time.monotonic() of the first lease
    cpu_s: float  # generator CPU seconds from its first lease to its last answer
    wall_s: float  # generator wall seconds over the same span
    leases: int = 0
    empty_leases: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # "status: reason" -> count
    shed: int = 0  # 503 answers (retried after a pause)
    reconnects: int = 0


async def _drive(url: str, keys: list[str], target: int, counter, finished, barrier) -> DriveResult:
    import orjson

    from bench.loadgen import frame, read_response, request_head

    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    lease_body = orjson.dumps(LEASE_BODY)
    out = DriveResult(0.0, 0.0, 0.0)
    ready: list[str] = []

    async def node(key: str) -> None:
        auth = {"Authorization": f"Bearer {key}"}
        lease_request = frame(request_head(hostport, "/v1/tasks/lease", auth), lease_body)
        results_head = request_head(hostport, "/v1/tasks/results", auth)
        conn = [await asyncio.open_connection(host, int(port))]
        ready.append(key)
        if len(ready) == len(keys):
            connected.set()
        await go.wait()

        async def call(request: bytes) -> bytes:
            while True:
                reader, writer = conn[0]
                try:
                    writer.write(request)
                    status, body = await asyncio.wait_for(read_response(reader), 120)
                except (OSError, asyncio.IncompleteReadError):
                    writer.close()
                    conn[0] = await asyncio.open_connection(host, int(port))
                    out.reconnects += 1
                    continue
                if status == 200:
                    return body
                if status == 503:
                    out.shed += 1
                    await asyncio.sleep(0.05 + random.random() * 0.05)
                    continue
                raise RuntimeError(f"HTTP {status}: {body[:500]!r}")

        while True:
            tasks = orjson.loads(await call(lease_request))["tasks"]
            out.leases += 1
            if not tasks:
                out.empty_leases += 1
                if counter.value >= target:
                    break
                await asyncio.sleep(EMPTY_LEASE_WAIT)
                continue
            results = [{"task_id": t["task_id"], "model_version": 1,
                        "outputs": {"label": [t["inputs"]["input"][0][0]]}, "duration_ms": 0.1}
                       for t in tasks]
            acks = orjson.loads(await call(frame(results_head, orjson.dumps({"results": results}))))["acks"]
            accepted = 0
            for a in acks:
                if a["status"] == "accepted":
                    accepted += 1
                else:
                    reason = f"{a['status']}: {a.get('reason')}"
                    out.refused[reason] = out.refused.get(reason, 0) + 1
            out.accepted += accepted
            with counter.get_lock():
                counter.value += accepted
                if counter.value >= target and not finished.value:
                    finished.value = time.monotonic()
        conn[0][1].close()

    go, connected = asyncio.Event(), asyncio.Event()
    workers = [asyncio.create_task(node(k)) for k in keys]
    # Every node holds its connection before the clock starts (or one failed to connect).
    await asyncio.wait([asyncio.create_task(connected.wait()), *workers], return_when=asyncio.FIRST_COMPLETED)
    for w in workers:
        if w.done():
            w.result()
    await asyncio.to_thread(barrier.wait, 120)
    cpu0, out.started = time.process_time(), time.monotonic()
    go.set()
    await asyncio.gather(*workers)
    out.cpu_s, out.wall_s = time.process_time() - cpu0, time.monotonic() - out.started
    return out


def _generator(url: str, keys: list[str], target: int, counter, finished, barrier, out) -> None:
    try:
        out.put(asyncio.run(_drive(url, keys, target, counter, finished, barrier)))
    except BaseException as exc:  # report, don't hang the parent
        out.put(RuntimeError(f"load generator failed: {exc!r}"))


@dataclass
class Drive:
    elapsed_s: float  # first lease to the last result needed
    generator_cpu_share: float  # generator CPU seconds / wall seconds, all its processes together
    parts: list[DriveResult]
    server_log_errors: int = 0  # lines of the server's log naming an error or a traceback
    server_cpu_s: float = 0.0  # CPU seconds of the uvicorn processes over the drive
    database_cpu_s: float = 0.0  # CPU seconds of the PostgreSQL cluster's processes over the drive

    def total(self, name: str) -> int:
        return sum(getattr(p, name) for p in self.parts)

    def refused(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for p in self.parts:
            for reason, n in p.refused.items():
                merged[reason] = merged.get(reason, 0) + n
        return merged

    def summary(self, n_tasks: int) -> str:
        refused = ", ".join(f"{n} {reason}" for reason, n in self.refused().items()) or "none"
        return (f"CPU per validated task: server {1000 * self.server_cpu_s / n_tasks:.2f} ms, PostgreSQL "
                f"{1000 * self.database_cpu_s / n_tasks:.2f} ms; "
                f"{self.total('accepted')} results accepted, {self.total('leases')} lease calls "
                f"({self.total('empty_leases')} empty), refused acks: {refused}, 503 shed: {self.total('shed')}, "
                f"reconnects: {self.total('reconnects')}, server log error lines: {self.server_log_errors}")


def drive_nodes(url: str, node_keys: list[str], n_tasks: int) -> Drive:
    """Closed-loop nodes against `url` from GENERATOR_PROCESSES processes until 2 results per task
    are accepted."""
    mp = multiprocessing.get_context("spawn")
    counter, finished = mp.Value("q", 0), mp.Value("d", 0.0)
    barrier, q = mp.Barrier(GENERATOR_PROCESSES), mp.Queue()
    procs = [mp.Process(target=_generator, args=(url, node_keys[i::GENERATOR_PROCESSES], 2 * n_tasks,
                                                 counter, finished, barrier, q))
             for i in range(GENERATOR_PROCESSES)]
    for proc in procs:
        proc.start()
    parts: list[DriveResult] = []
    try:
        for _ in procs:
            got = q.get(timeout=1800)
            if isinstance(got, Exception):
                raise got
            parts.append(got)
    finally:
        for proc in procs:
            proc.join(timeout=30 if len(parts) == len(procs) else 0)
            if proc.is_alive():
                proc.terminate()
    started = min(p.started for p in parts)
    cpu_share = sum(p.cpu_s for p in parts) / max(p.wall_s for p in parts)
    return Drive(finished.value - started, cpu_share, parts)


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


def _validated(dsn: str, sql: str) -> int:
    import psycopg2

    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _tree_cpu_s(root_pid: int) -> float:
    """CPU seconds of a process, its live descendants and its reaped children (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry)
        parents[pid] = int(fields[1])
        # utime, stime, then the reaped children's cutime, cstime
        times[pid] = (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    total, stack = times.get(root_pid, (0, 0))[1], [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, (0, 0))[0]
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total / os.sysconf("SC_CLK_TCK")


def _drive_server(server, node_keys: list[str], n_tasks: int, dsn: str, validated_sql: str,
                  database_pid: int) -> Drive:
    """Drive one server's nodes to the end, check every task is validated, and account CPU."""
    server_cpu0, database_cpu0 = _tree_cpu_s(server.proc.pid), _tree_cpu_s(database_pid)
    try:
        drive = drive_nodes(server.url, node_keys, n_tasks)
    except Exception as exc:
        raise RuntimeError(f"{exc}; server log: {server.log_path}") from exc
    drive.server_cpu_s = _tree_cpu_s(server.proc.pid) - server_cpu0
    drive.database_cpu_s = _tree_cpu_s(database_pid) - database_cpu0
    log = server.log_path.read_text(errors="replace").splitlines()
    drive.server_log_errors = sum(1 for line in log if "Traceback" in line or "ERROR" in line)
    validated = _validated(dsn, validated_sql)
    if validated != n_tasks:
        raise RuntimeError(f"only {validated} of {n_tasks} tasks validated; server log: {server.log_path}")
    return drive


def run(ctx: BenchContext) -> list[BenchRow]:
    from noderr_core.migrations import upgrade_database
    from noderr_local.postgres import PostgresCluster
    from noderr_local.process import stop_process
    from tests.support.apiserver import start_api_server

    n_tasks = 3000 if ctx.quick else 30000
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-tasks-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root)
    server = None
    try:
        cluster.start()

        def dsn(db: str) -> str:
            return cluster.url(db).replace("postgresql+psycopg2://", "postgresql://")

        for db in ("bench_tasks", "bench_minimal", "bench_raw"):
            cluster.admin_execute(f"CREATE DATABASE {db}")
        db_url = cluster.url("bench_tasks")
        upgrade_database(db_url)
        _bootstrap_admin(db_url)
        server = start_api_server(db_url, ctx.workdir / "api", workers=2)
        node_keys = _seed_api(server.url, db_url, n_tasks)
        api = _drive_server(server, node_keys, n_tasks, dsn("bench_tasks"),
                            "SELECT count(*) FROM tasks WHERE status = 'validated'", cluster.pid)
        stop_process(server.proc)

        _seed_minimal(dsn("bench_minimal"), node_keys, n_tasks)
        server = start_api_server(cluster.url("bench_minimal"), ctx.workdir / "minimal", workers=2,
                                  app="bench.minimal_tasks:app")
        minimal = _drive_server(server, node_keys, n_tasks, dsn("bench_minimal"),
                                "SELECT count(*) FROM m_tasks WHERE status = 'validated'", cluster.pid)
        stop_process(server.proc)
        server = None

        raw_elapsed = _raw_queue(dsn("bench_raw"), n_tasks)
    finally:
        if server is not None:
            stop_process(server.proc)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    api_rate, minimal_rate, raw_rate = n_tasks / api.elapsed_s, n_tasks / minimal.elapsed_s, n_tasks / raw_elapsed
    load = (f"{n_tasks} tasks, replicas=2 quorum=2 (adaptive off), {NODES} closed-loop nodes x batches of "
            f"{BATCH}, raw-socket generator in {GENERATOR_PROCESSES} process(es); uvicorn 2 workers each; "
            "PostgreSQL fsync=off, one cluster; gen CPU = generator CPU s / wall s")
    raw_figure = f"raw SKIP LOCKED queue jobs/s ({NODES} thr)"
    return [
        BenchRow("tasks", f"validated tasks/s via API (gen CPU {api.generator_cpu_share:.2f})", api_rate,
                 "tasks/s", f"minimal 1-stmt app (gen CPU {minimal.generator_cpu_share:.2f})", minimal_rate,
                 True, f"{load}. Goal: ratio >= 0.8. API: {api.summary(n_tasks)}"),
        BenchRow("tasks", f"validated tasks/s via API (gen CPU {api.generator_cpu_share:.2f})", api_rate,
                 "tasks/s", raw_figure, raw_rate, True,
                 "raw queue: completes each job once, without HTTP, replication or validation"),
        BenchRow("tasks", f"minimal 1-stmt app tasks/s (gen CPU {minimal.generator_cpu_share:.2f})",
                 minimal_rate, "tasks/s", raw_figure, raw_rate, True,
                 "minimal app (bench/minimal_tasks.py): Starlette + orjson, psycopg2 in a threadpool, lease = 1 "
                 "statement, results = 1 lock + 1 statement with a plain quorum-of-2 equality check; it leaves "
                 "out lease-expiry re-leasing, tolerance, deadlines, adaptive replication, the distinct-operator "
                 f"rule and reliability: a ceiling, not a design. {minimal.summary(n_tasks)}"),
    ]
