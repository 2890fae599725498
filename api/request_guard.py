"""Bounds every request body, and refuses key-less node/client protocol calls, before any body is read.

Pure ASGI (no BaseHTTPMiddleware, which buffers): it runs before FastAPI reads or parses anything.

Rules:
- Every request body has a size limit: `DEFAULT_BODY_LIMIT`, or the route's own size from
  `ROUTE_BODY_LIMITS` (the Typeform webhook, batch submissions and result batches need more).
  A declared `Content-Length` over the limit is refused with 413 before a byte of the body is
  read; a streamed (chunked) body is counted while the app reads it and refused with 413 as soon as
  it passes the limit (the app is told the client left; its answer, if any, is dropped), so memory
  never holds more than the limit plus one chunk.
- Node and client protocol calls that carry a body (POST/PUT/PATCH under /v1/) must present a
  well-formed `Authorization: Bearer nk_…` / `ck_…` key, or they get the same 401 the route's own
  principal check would give, before any body is read. This is a cheap format check only: the
  key itself is still verified against the database by the route's dependency (api/deps.py), and
  the body limit above bounds what a well-formed but false key can make the server read.

Refusals use FastAPI's error shape: `{"detail": "<what to do>"}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from typing import Any

from api.refusable_body import ASGIApp, run_with_refusable_body
from noderr_core.security import CLIENT_KEY_PREFIX, NODE_KEY_PREFIX, parse_api_key
from noderr_core.tasks.rules import MAX_SUBMIT_BODY_BYTES

DEFAULT_BODY_LIMIT = 256 * 1024  # forms, heartbeats, leases: a few kB each
WEBHOOK_BODY_LIMIT = 1_000_000  # Typeform deliveries are a few kB; long free-text answers fit
# (method, exact path) -> limit. Batch routes carry tensors (outputs of up to 1,024 results).
ROUTE_BODY_LIMITS: dict[tuple[str, str], int] = {
    ("POST", "/v1/tasks"): MAX_SUBMIT_BODY_BYTES,
    ("POST", "/v1/tasks/results"): MAX_SUBMIT_BODY_BYTES,
}
PREFIX_BODY_LIMITS: tuple[tuple[str, int], ...] = (("/webhooks/typeform", WEBHOOK_BODY_LIMIT),)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Node protocol routes that take a body; everything else under /v1/tasks with a body is a client's.
NODE_BODY_PATHS = frozenset({
    "/v1/tasks/lease", "/v1/tasks/lease/extend", "/v1/tasks/results", "/v1/tasks/release",
    "/v1/nodes/heartbeat",
})
NODE_PATH_PREFIXES = ("/v1/nodes/", "/v1/models/")
CLIENT_PATH_PREFIXES = ("/v1/tasks",)

_NODE_MISSING = "missing node API key: send 'Authorization: Bearer nk_…' from your .env"
_NODE_MALFORMED = "malformed node API key (expected nk_<id>_<secret>)"
_CLIENT_MISSING = "missing client API key: send 'Authorization: Bearer ck_…'"
_CLIENT_MALFORMED = "unknown, revoked or malformed client API key (expected ck_<id>_<secret>)"


def body_limit_for(method: str, path: str) -> int:
    """The largest body this route accepts, in bytes."""
    limit = ROUTE_BODY_LIMITS.get((method, path.rstrip("/") or "/"))
    if limit is not None:
        return limit
    for prefix, prefix_limit in PREFIX_BODY_LIMITS:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix_limit
    return DEFAULT_BODY_LIMIT


def required_key_prefix(method: str, path: str) -> str | None:
    """`nk`/`ck` when this call must carry that kind of key before its body is read, else None."""
    if method not in BODY_METHODS or not path.startswith("/v1/"):
        return None
    if path in NODE_BODY_PATHS or path.startswith(NODE_PATH_PREFIXES):
        return NODE_KEY_PREFIX
    if path == "/v1/tasks" or path.startswith(CLIENT_PATH_PREFIXES[0] + "/"):
        return CLIENT_KEY_PREFIX
    return None


def _header(scope: MutableMapping[str, Any], wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value
    return None


def key_format_refusal(scope: MutableMapping[str, Any], prefix: str) -> str | None:
    """The 401 message for a missing or malformed key of kind `prefix`, or None when well-formed."""
    missing, malformed = ((_NODE_MISSING, _NODE_MALFORMED) if prefix == NODE_KEY_PREFIX
                          else (_CLIENT_MISSING, _CLIENT_MALFORMED))
    raw = _header(scope, b"authorization")
    if raw is None:
        return missing
    scheme, _, credentials = raw.decode("latin-1").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return missing
    if len(credentials) > 200 or parse_api_key(credentials, prefix) is None:
        return malformed
    return None


async def send_json(send: Callable, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


# What to do instead, where a route has a better hint than "send less".
_TOO_LARGE_HINTS = {"/v1/tasks": "split the batch", "/v1/tasks/results": "split the batch"}


def too_large_message(limit: int, path: str = "") -> str:
    hint = _TOO_LARGE_HINTS.get(path.rstrip("/"), "send less data per request")
    return f"request body is larger than this endpoint accepts ({limit} bytes): {hint}"


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        prefix = required_key_prefix(method, path)
        if prefix is not None:
            refusal = key_format_refusal(scope, prefix)
            if refusal is not None:
                await send_json(send, 401, refusal, [(b"www-authenticate", b"Bearer")])
                return
        limit = body_limit_for(method, path)
        declared = _header(scope, b"content-length")
        if declared is not None:
            text = declared.strip()
            if not text.isdigit():
                await send_json(send, 400, "Content-Length must be a non-negative integer")
                return
            if int(text) > limit:
                await send_json(send, 413, too_large_message(limit, path), [(b"connection", b"close")])
                return

        received = 0

        def over_limit(chunk: bytes) -> bool:
            nonlocal received
            received += len(chunk)
            return received > limit

        async def refuse_too_large(send_) -> None:
            await send_json(send_, 413, too_large_message(limit, path), [(b"connection", b"close")])

        await run_with_refusable_body(self.app, scope, receive, send, should_refuse=over_limit,
                                      refuse=refuse_too_large)
