"""Overload: a burst far above one worker's capacity is answered (200 or 503 + Retry-After), never
stalls, and the worker serves normally right after; a stalled or trickled request body cannot hold
an admitted slot (408 once its time runs out); authentication is cached per key for a short time
and suspension still takes effect within it.

Runs the real API under uvicorn on SQLite and PostgreSQL (where issue 15 measured the deadlock: every
threadpool thread waiting for a connection held by requests waiting for a thread).
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from api.deps import PrincipalCache
from noderr_core.tables import Node, NodeStatus

BURST = 300


async def _burst(url: str, keys: list[str], n: int) -> list[httpx.Response | Exception]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    # The bound: every request gets *an* answer well inside this; a stalled worker (the old
    # behaviour) answered nothing for minutes.
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def one(i: int):
            try:
                return await http.post("/v1/nodes/heartbeat", json={"uptime_seconds": i},
                                       headers={"Authorization": f"Bearer {keys[i % len(keys)]}"})
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                return exc
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_a_burst_far_above_capacity_is_answered_or_shed_and_the_api_keeps_serving(
    db_url, task_world, api_server_factory
):
    keys = [task_world.node()[1] for _ in range(20)]
    # A small worker: 4 requests at a time, 16 may queue briefly; the burst is 75× that.
    server = api_server_factory(db_url, env={
        "NODERR_API_MAX_IN_FLIGHT": "4", "NODERR_API_MAX_QUEUED": "16",
        "NODERR_API_QUEUE_WAIT_SECONDS": "0.5", "NODERR_API_RETRY_AFTER_SECONDS": "3",
    })
    answers = asyncio.run(_burst(server.url, keys, BURST))

    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, f"{len(errors)} requests got no answer, e.g. {errors[0]!r}"
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, f"unexpected statuses: {sorted(set(codes))}"
    ok, shed = codes.count(200), codes.count(503)
    assert ok >= 4, "the worker made no progress during the burst"
    assert shed > 0, "a burst 75x the worker's capacity was not shed"
    for a in answers:
        if a.status_code == 503:
            assert a.headers["retry-after"] == "3"
            assert "retry after 3s" in a.json()["detail"]

    # Right after the burst the worker serves every node normally (no stuck threads/connections).
    with server.client() as http:
        for key in keys:
            r = http.post("/v1/nodes/heartbeat", json={"uptime_seconds": 1},
                          headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        assert http.get("/healthz").status_code == 200


def _open_upload(url: str, path: str, length: int, first_chunk: bytes) -> socket.socket:
    """A connection that has sent a request's head and the first part of its body."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=60)
    conn.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + first_chunk)
    return conn


def _answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout: no answer)."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    return data


def test_a_stalled_or_trickled_body_is_answered_408_and_frees_its_slot(sqlite_url, api_server_factory):
    # Two slots; a body must arrive within 1 s plus 1 s per 1,000 bytes.
    server = api_server_factory(sqlite_url, env={
        "NODERR_API_MAX_IN_FLIGHT": "2", "NODERR_API_MAX_QUEUED": "4", "NODERR_API_QUEUE_WAIT_SECONDS": "0.5",
        "NODERR_API_BODY_TIMEOUT_SECONDS": "1", "NODERR_API_BODY_MIN_RATE": "1000",
    })
    # Both slots taken: one upload stalls after 5 bytes, one trickles 10 bytes at a time (each
    # buys 10 ms, far less than the time between them).
    stalled = _open_upload(server.url, "/webhooks/typeform", 1000, b'{"a":')
    trickle = _open_upload(server.url, "/webhooks/typeform", 1000, b'{"a":')
    trickle.settimeout(0.3)
    answer = b""
    for _ in range(300):  # at most 30 of the 1,000 bytes ever get there
        try:
            trickle.sendall(b" " * 10)
            answer = trickle.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if answer:
            break
    trickle.settimeout(60)
    answer += _answer(trickle)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"send it within 1s plus 1s per 1000 bytes" in answer

    answer = _answer(stalled)  # and the server closed the connection after answering
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()

    # The slots are free: pages and node calls are served, not shed.
    with server.client() as http:
        for _ in range(5):
            assert http.get("/admin/login").status_code == 200


def test_a_slow_but_steady_upload_is_read_to_the_end(sqlite_url, api_server_factory):
    server = api_server_factory(sqlite_url, env={
        "NODERR_API_BODY_TIMEOUT_SECONDS": "1", "NODERR_API_BODY_MIN_RATE": "100",
    })
    body = b'{"form_response": {"token": "' + b"x" * 2960 + b'"}}'
    parts = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    conn = _open_upload(server.url, "/webhooks/typeform", len(body), parts[0])
    for part in parts[1:]:
        time.sleep(1.5)  # longer than the base second: the bytes already sent pay for the wait
        conn.sendall(part)
    answer = conn.recv(65536)  # (the connection stays open: keep-alive)
    conn.close()
    # The whole body was read and judged (an unsigned delivery), not cut off.
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_suspension_takes_effect_within_the_auth_cache_lifetime(db_url, session_factory, task_world,
                                                                 api_server_factory):
    node, key = task_world.node()
    server = api_server_factory(db_url, env={"NODERR_AUTH_CACHE_SECONDS": "1"})
    headers = {"Authorization": f"Bearer {key}"}
    with server.client() as http:
        r = http.post("/v1/nodes/heartbeat", json={"uptime_seconds": 1}, headers=headers)
        assert r.status_code == 200 and r.json()["node_status"] == "online"
        with session_factory() as s:
            row = s.get(Node, node.id)
            row.status, row.status_reason = NodeStatus.SUSPENDED, "abuse report"
            s.commit()
        time.sleep(1.1)  # the cache entry is at most 1 s old now
        r = http.post("/v1/nodes/heartbeat", json={"uptime_seconds": 2}, headers=headers)
        assert r.status_code == 403 and "abuse report" in r.json()["detail"]
        # Refused before its body is even read: an unparseable body still gets the 401/403.
        r = http.post("/v1/tasks/results", content=b"{not json", headers={
            **headers, "Content-Type": "application/json"})
        assert r.status_code == 403
        r = http.post("/v1/tasks/results", content=b"{not json",
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 401


def test_principal_cache_expires_entries_and_stays_bounded():
    now = [0.0]
    cache = PrincipalCache(ttl=5, max_entries=3, clock=lambda: now[0])
    cache.put("a", "node-a")
    assert cache.get("a") == "node-a"
    now[0] = 4.9
    assert cache.get("a") == "node-a"  # served from memory within the ttl
    now[0] = 5.0
    assert cache.get("a") is None  # and looked up again after it
    for k in "bcde":
        cache.put(k, k)
    assert len(cache._entries) <= 3 and cache.get("e") == "e"
    off = PrincipalCache(ttl=0)
    off.put("a", "node-a")
    assert off.get("a") is None  # ttl 0 = no caching


@pytest.mark.parametrize("header,expected", [("3", 3.0), ("0", 0.0), ("1e9", 300.0), ("soon", None),
                                             ("-1", None), (None, None)])
def test_the_node_reads_retry_after(header, expected):
    from node_service.control_plane import parse_retry_after

    assert parse_retry_after(header) == expected


def test_the_node_waits_at_least_retry_after_with_jitter():
    import random

    from node_service.control_plane import Backoff

    delays = [Backoff(0.5, 60, random.Random(i)).next_delay(10.0) for i in range(200)]
    assert all(10.0 <= d <= 15.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 150  # spread out, not in lockstep
