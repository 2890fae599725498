"""An open-loop HTTP/1.1 load generator on raw asyncio sockets, run in its own process.

Open loop: request i is *due* at start + i / rate whether or not earlier ones were answered, and
its latency runs from that due time (so queueing in the server, or in this generator, counts —
closed-loop tools hide it). Requests are pre-encoded bytes written on keep-alive connections; a
response is read by Content-Length. With no idle connection, a new one is opened (up to
`max_connections`; beyond that the request waits for one, and its latency still runs).

The generator reports its own CPU time over the run, so a result can say whether the generator
(rather than the server) was the limit.

Its raw-socket pieces (`request_head`, `frame`, `read_response`) also serve the closed-loop node
driver of bench/bench_tasks.py.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass


@dataclass
class OpenLoopResult:
    rate: float
    duration_s: float
    sent: int
    statuses: dict[int, int]
    latencies_ms: list[float]  # answered requests, from due time to last byte
    failures: int  # connection errors / timeouts (no HTTP answer)
    generator_cpu_share: float  # generator CPU seconds / wall seconds (1.0 = one core busy)


def request_head(hostport: str, path: str, headers: dict[str, str]) -> bytes:
    """A keep-alive JSON POST's request line and headers, built once, ending just before the
    Content-Length value: `frame(head, body)` completes it for each body."""
    head = [f"POST {path} HTTP/1.1", f"Host: {hostport}", "Content-Type: application/json",
            "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("content-type", "content-length")]
    head.append("Content-Length: ")
    return "\r\n".join(head).encode()


def frame(head: bytes, body: bytes) -> bytes:
    """One request on the wire: a `request_head` and a body framed by Content-Length."""
    return b"%b%d\r\n\r\n%b" % (head, len(body), body)


def _request_bytes(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    return frame(request_head(host, path, headers), body)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response framed by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    return status, (await reader.readexactly(length) if length else b"")


async def _open_loop(host: str, port: int, requests: list[bytes], rate: float, duration: float,
                     max_connections: int, timeout: float) -> OpenLoopResult:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_count = 0
    slots = asyncio.Semaphore(max_connections)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    failures = 0

    async def one(payload: bytes, due: float) -> None:
        nonlocal open_count, failures
        async with slots:
            try:
                if idle:
                    reader, writer = idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(host, port)
                    open_count += 1
                writer.write(payload)
                status, _body = await asyncio.wait_for(read_response(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
                failures += 1
                return
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            idle.append((reader, writer))

    cpu0 = time.process_time()
    start = time.perf_counter() + 0.05
    n = int(rate * duration)
    pending = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(requests[i % len(requests)], due)))
    await asyncio.gather(*pending)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    for _r, w in idle:
        w.close()
    return OpenLoopResult(rate, duration, n, statuses, latencies, failures, cpu / wall if wall else 0.0)


def _child(args, out) -> None:
    try:
        out.put(asyncio.run(_open_loop(*args)))
    except BaseException as exc:  # report, never hang the parent
        out.put(RuntimeError(f"load generator failed: {exc!r}"))


def run_open_loop(url: str, path: str, bodies_and_headers: list[tuple[bytes, dict[str, str]]], *,
                  rate: float, duration: float, max_connections: int = 512,
                  timeout: float = 60.0) -> OpenLoopResult:
    """Drive `url` + `path` at `rate` req/s for `duration` s from a separate process."""
    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    requests = [_request_bytes(hostport, path, b, h) for b, h in bodies_and_headers]
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=((host, int(port), requests, rate, duration, max_connections,
                                          timeout), q))
    p.start()
    got = q.get(timeout=duration + timeout + 120)
    p.join(timeout=30)
    if isinstance(got, Exception):
        raise got
    return got
