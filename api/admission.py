"""Admission control: a worker process serves at most N requests at once and sheds the rest.

Why: the request path of a sync route holds a threadpool thread and, inside it, a pooled database
connection. Without a bound, a burst larger than the threadpool could park every thread waiting for
a connection while every connection was held by a request waiting for a thread — the process then
answered nothing, not even after the burst (issue 15 measured it: 300 concurrent heartbeats, 40 ×
500 and 260 time-outs, no answer 60 s later). With at most `max_in_flight` requests admitted, and
the pool and threadpool sized above that (`size_for_admission`), no admitted request can wait for
a thread and a connection at once, so the process keeps making progress under any load.

Rules:
- up to `max_in_flight` requests run; up to `max_queued` more wait (without a thread or a
  connection) for at most `queue_wait_seconds`;
- anything beyond, or a request whose wait ran out, is answered at once with
  `503 {"detail": …}` and `Retry-After: <seconds>`; nodes honour it with jittered backoff
  (node_service/control_plane.py), so a shed fleet does not come back in lockstep;
- `/healthz` bypasses admission (it touches nothing), so a load balancer does not take an
  overloaded but healthy replica out of rotation and make the overload worse.

Pure ASGI (no BaseHTTPMiddleware): the body is never read before admission, and the limiter's
state is per app instance (one per worker process), created lazily in the serving event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

ASGIApp = Callable[[MutableMapping[str, Any], Callable, Callable], Awaitable[None]]

EXEMPT_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class AdmissionLimits:
    max_in_flight: int
    max_queued: int
    queue_wait_seconds: float
    retry_after_seconds: int

    def pool_size(self) -> int:
        """Database connections one worker needs so that an admitted request never waits for one:
        one per admitted request, plus as many again for a request that opens a second session
        (authentication on a cache miss, /metrics) and for the lifespan's own work."""
        return 2 * self.max_in_flight + 2

    def threads(self) -> int:
        """Threadpool threads one worker needs: one per admitted request (sync dependencies and
        routes run one at a time per request) plus headroom for lifespan and file responses."""
        return self.max_in_flight + 8


class AdmissionControl:
    def __init__(self, app: ASGIApp, *, limits: AdmissionLimits):
        self.app = app
        self.limits = limits
        self._slots: asyncio.Semaphore | None = None
        self.in_flight = 0
        self.queued = 0
        self.shed = 0  # answered 503 since start (read by tests and the metrics page)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_in_flight)
        slots = self._slots
        if slots.locked():
            if self.queued >= self.limits.max_queued:
                await self._shed(send, "too many requests are waiting")
                return
            self.queued += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.limits.queue_wait_seconds)
            except TimeoutError:
                await self._shed(send, "no capacity freed up in time")
                return
            finally:
                self.queued -= 1
        else:
            await slots.acquire()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            slots.release()

    async def _shed(self, send: Callable, why: str) -> None:
        self.shed += 1
        retry = self.limits.retry_after_seconds
        body = json.dumps({
            "detail": f"the control plane is at capacity ({why}): retry after {retry}s, with jitter"
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
                (b"cache-control", b"no-store"),
            ],
        })
        await send({"type": "http.response.body", "body": body})
