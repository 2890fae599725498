"""The ceiling for bench_tasks: the node task protocol in as little as can serve it.

A tiny ASGI app (Starlette + orjson) serving the same `POST /v1/tasks/lease` and
`POST /v1/tasks/results` JSON shapes as the API (noderr_protocol/work.py: LeaseRequest →
LeaseResponse, ResultBatch → ResultBatchAck), on its own minimal schema (`create_schema`) in its own
database. Run it under uvicorn like the API: `uvicorn bench.minimal_tasks:app --workers 2`, with
`NODERR_DATABASE_URL` naming the database (as `tests.support.apiserver.start_api_server` sets it).

- node auth: `Authorization: Bearer <key>`; the key's SHA-256 is looked up once per worker and the
  node id cached in memory;
- lease: one statement, `UPDATE m_tasks … FROM (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` taking
  one open replica slot per task, with the node's replica rows inserted in the same statement;
- results: one transaction of one lock (the batch's task rows, in id order, so the two replicas of a
  task are decided one after the other) and one statement that records the outputs and marks a
  task validated when another node's output is equal (a plain quorum of 2).

Database work is psycopg2 (the project's driver) on a small per-worker connection pool, run in
Starlette's threadpool; a statement is one round trip (autocommit, the results transaction sent as
one `BEGIN; lock; statement` string plus `COMMIT`).

Deliberately left out, so this is a ceiling and not a design: lease expiry and re-leasing, request
validation beyond the fields used, numeric tolerance, deadlines, adaptive replication, the
distinct-operator rule, reliability/quotas/blocking, staking, priorities, audit and metrics.
"""

from __future__ import annotations

import hashlib
import os
import queue
from datetime import UTC, datetime, timedelta

import orjson
import psycopg2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL_SIZE = 16  # connections per worker: two workers cover 32 closed-loop nodes

SCHEMA = """
CREATE TABLE m_nodes (id serial PRIMARY KEY, key_sha256 bytea NOT NULL UNIQUE);
CREATE TABLE m_tasks (
    id bigserial PRIMARY KEY, model_name text NOT NULL, inputs json NOT NULL,
    open_replicas smallint NOT NULL, status text NOT NULL DEFAULT 'pending', result jsonb
);
CREATE INDEX m_tasks_open ON m_tasks (id) WHERE open_replicas > 0;
CREATE TABLE m_replicas (
    task_id bigint NOT NULL REFERENCES m_tasks, node_id int NOT NULL REFERENCES m_nodes,
    lease_expires_at timestamptz NOT NULL, output jsonb, submitted_at timestamptz,
    PRIMARY KEY (task_id, node_id)
);
"""

LEASE_SQL = """
WITH leased AS (
    UPDATE m_tasks t SET open_replicas = t.open_replicas - 1
    FROM (SELECT id FROM m_tasks c
          WHERE c.open_replicas > 0 AND c.model_name = ANY(%(models)s)
            AND NOT EXISTS (SELECT 1 FROM m_replicas r WHERE r.task_id = c.id AND r.node_id = %(node)s)
          ORDER BY c.id LIMIT %(n)s FOR UPDATE SKIP LOCKED) AS p
    WHERE t.id = p.id
    RETURNING t.id, t.model_name, t.inputs
), granted AS (
    INSERT INTO m_replicas (task_id, node_id, lease_expires_at)
    SELECT id, %(node)s, %(expires)s FROM leased
)
SELECT id, model_name, inputs::text FROM leased ORDER BY id
"""

RESULTS_SQL = """
BEGIN;
SELECT id FROM m_tasks WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE;
WITH v (task_id, output) AS (SELECT * FROM unnest(%(ids)s::bigint[], %(outputs)s::jsonb[])),
submitted AS (
    UPDATE m_replicas r SET output = v.output, submitted_at = now()
    FROM v WHERE r.task_id = v.task_id AND r.node_id = %(node)s AND r.output IS NULL
    RETURNING r.task_id, r.output
), validated AS (
    UPDATE m_tasks t SET status = 'validated', result = s.output
    FROM submitted s
    WHERE t.id = s.task_id AND t.status = 'pending'
      AND EXISTS (SELECT 1 FROM m_replicas o
                  WHERE o.task_id = s.task_id AND o.node_id <> %(node)s AND o.output = s.output)
)
SELECT task_id FROM submitted
"""


def create_schema(cur, node_keys: list[str]) -> None:
    """The tables, and one node per key (the app finds a node by its key's SHA-256)."""
    cur.execute(SCHEMA)
    for key in node_keys:
        cur.execute("INSERT INTO m_nodes (key_sha256) VALUES (%s)", (hashlib.sha256(key.encode()).digest(),))


def dsn_from_env() -> str:
    return os.environ["NODERR_DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")


class _Pool:
    """A fixed set of autocommit connections, opened on first use in the serving worker."""

    def __init__(self, dsn: str, size: int):
        self._dsn = dsn
        self._free: queue.LifoQueue = queue.LifoQueue()
        for _ in range(size):
            self._free.put(None)

    def run(self, fn, *args):
        conn = self._free.get()
        try:
            if conn is None or conn.closed:
                conn = psycopg2.connect(self._dsn)
                conn.autocommit = True
            with conn.cursor() as cur:
                return fn(cur, *args)
        except Exception:
            if conn is not None and not conn.closed:
                conn.close()  # an unknown state: the next user opens a fresh one
            conn = None
            raise
        finally:
            self._free.put(conn)


_pool: _Pool | None = None
_nodes: dict[str, int] = {}  # key -> node id, per worker


def _db(fn, *args):
    global _pool
    if _pool is None:
        _pool = _Pool(dsn_from_env(), POOL_SIZE)
    return run_in_threadpool(_pool.run, fn, *args)


def _json(payload, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _find_node(cur, digest: bytes) -> int | None:
    cur.execute("SELECT id FROM m_nodes WHERE key_sha256 = %s", (digest,))
    row = cur.fetchone()
    return row[0] if row else None


async def _node_id(request: Request) -> int | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return None
    key = auth[7:]
    node = _nodes.get(key)
    if node is None:
        node = await _db(_find_node, hashlib.sha256(key.encode()).digest())
        if node is not None:
            _nodes[key] = node
    return node


def _lease(cur, node: int, models: list[str], n: int, expires: datetime) -> list[tuple]:
    cur.execute(LEASE_SQL, {"node": node, "models": models, "n": n, "expires": expires})
    return cur.fetchall()


def _submit(cur, node: int, ids: list[int], outputs: list[str]) -> set[int]:
    cur.execute(RESULTS_SQL, {"node": node, "ids": ids, "outputs": outputs})
    accepted = {row[0] for row in cur.fetchall()}
    cur.execute("COMMIT")
    return accepted


_UNAUTHORIZED = {"detail": "missing or invalid node API key"}


async def lease(request: Request) -> Response:
    node = await _node_id(request)
    if node is None:
        return _json(_UNAUTHORIZED, 401)
    try:
        body = orjson.loads(await request.body())
        models = [str(m["name"]) for m in body["models"]]
        n = min(max(int(body.get("max_tasks", 64)), 1), 512)
        seconds = min(max(int(body.get("lease_seconds", 120)), 10), 3600)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return _json({"detail": "invalid lease request"}, 422)
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    rows = await _db(_lease, node, models, n, expires)
    tasks = [{"task_id": str(tid), "model_name": model, "inputs": orjson.Fragment(inputs),
              "lease_expires_at": expires} for tid, model, inputs in rows]
    return _json({"tasks": tasks, "lease_expires_at": expires if tasks else None,
                  "retry_after_seconds": 1.0, "notice": None})


async def results(request: Request) -> Response:
    node = await _node_id(request)
    if node is None:
        return _json(_UNAUTHORIZED, 401)
    try:
        batch = orjson.loads(await request.body())["results"]
        ids = [int(r["task_id"]) for r in batch]
        outputs = [orjson.dumps(r.get("outputs")).decode() for r in batch]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return _json({"detail": "invalid result batch"}, 422)
    accepted = await _db(_submit, node, ids, outputs) if ids else set()
    acks = [{"task_id": str(tid), "status": "accepted", "reason": None} if tid in accepted
            else {"task_id": str(tid), "status": "refused", "reason": "no open lease for this node"}
            for tid in ids]
    return _json({"acks": acks})


async def healthz(_request: Request) -> Response:
    return _json({"status": "ok"})


app = Starlette(routes=[
    Route("/v1/tasks/lease", lease, methods=["POST"]),
    Route("/v1/tasks/results", results, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
])
