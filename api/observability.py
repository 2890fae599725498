"""API observability: Prometheus `/metrics`, request ids, and structured logs without secrets.

`install_observability(app, settings)` adds, per app (no process-global registry, so several apps
in one process — tests — do not share counters):

- a pure-ASGI middleware that gives every request an id (the caller's ``X-Request-ID`` when it is a
  sane token, else a new one; echoed in the response), counts requests and observes their latency
  by *route template* (``/v1/tasks/{task_id}``, never the raw path: bounded label cardinality, and
  tokens in paths never reach a label or a log line), and writes one access-log line per request;
- ``GET /metrics`` in the Prometheus text format, including cheap business gauges (nodes per
  status, open alerts, outbox backlog) computed with three GROUP BY queries at scrape time.

`configure_logging(settings)` (call it at start-up, not import) makes every log line JSON outside
local development (or when NODERR_LOG_JSON says so), tags it with the current request id, and
scrubs secrets (API keys, bearer tokens, Typeform signatures, cookies, passwords, credentials in
URLs) from the formatted text, tracebacks included.

Several uvicorn workers in one container (`--workers N`) report one consistent set of metrics with
Prometheus multiprocess mode: set PROMETHEUS_MULTIPROC_DIR to an empty directory private to the
container (deploy/k8s mounts an emptyDir) before the workers start. Each worker then writes its
instruments to files there and every scrape, whichever worker answers, reads the sum over all
workers, so counters only go up between scrapes. Unset (one worker, tests): a per-app registry.
"""

from __future__ import annotations

import atexit
import functools
import hmac
import itertools
import json
import logging
import os
import re
import sys
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from noderr_core.network import node_status_counts, open_alert_count, outbox_backlog
from noderr_core.security import sha256_hex
from noderr_core.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER = "noderr.api.access"
UNMATCHED_ROUTE = "<unmatched>"
# Probes and scrapes would drown the access log; they are still counted (except /metrics itself).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# A caller's request id is kept only when it cannot inject anything into a log line or header.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("noderr_request_id", default=None)

ASGIApp = Callable[[MutableMapping[str, Any], Callable, Callable], Awaitable[None]]


def current_request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return _request_id.get()


# --- secrets never reach a log line ------------------------------------------------------------

REDACTED = "[REDACTED]"
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # Node / client API keys: keep the public key id (useful to debug), drop the secret.
    (re.compile(r"\b((?:nk|ck)_[0-9a-f]{16})_[A-Za-z0-9_\-]+"), r"\1_" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\bsha256=[A-Za-z0-9+/=_\-]+"), "sha256=" + REDACTED),
    # Header-like "Name: value" and JSON-ish "name": "value" for secret-bearing names.
    (
        re.compile(
            r"(?i)([\"']?(?:authorization|cookie|set-cookie|typeform-signature|x-api-key|password|"
            r"passwd|secret|secret_key|api_key|token|csrf_token|private_key|signer_key)[\"']?"
            r"\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"
        ),
        r"\1" + REDACTED,
    ),
    # Capability tokens in paths (the portal's single-use download links hold a node key).
    (re.compile(r"(/portal/download/)[^\s/?#\"'{][^\s/?#\"']*"), r"\1" + REDACTED),
    # Secret-bearing query parameters (presigned URLs, tokens, codes, signatures).
    (
        re.compile(
            r"(?i)([?&](?:[a-z0-9_\-]*token|key|api_key|code|password|secret|signature|sig|nonce|"
            r"x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s\"']*"
        ),
        r"\1" + REDACTED,
    ),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]


def redact(text: str) -> str:
    """Remove secrets from free text (log messages, exception texts)."""
    if len(text) <= 128:
        # The access log's short fields (method, route, client, message) repeat on every request.
        return _redact_short(text)
    return _redact(text)


def _redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_redact_short = functools.lru_cache(maxsize=4096)(_redact)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


# Attributes every LogRecord has; anything else was passed with `extra=` and is a structured field.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "request_id", "taskName"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class PlainLogFormatter(logging.Formatter):
    """Human-readable lines for local development, scrubbed like the JSON ones."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: v for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        }
        line = super().format(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(line)


def wants_json_logs(settings: Settings) -> bool:
    if settings.log_json is not None:
        return settings.log_json
    return settings.env != "local"


def configure_logging(settings: Settings, stream=None) -> logging.Handler:
    """Route the root logger (and uvicorn's) through one scrubbing handler; idempotent."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_noderr_handler", False):
            root.removeHandler(existing)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._noderr_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonLogFormatter() if wants_json_logs(settings) else PlainLogFormatter())
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    # uvicorn installs its own unscrubbed handlers; send its records through ours instead.
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True
    # uvicorn's access line carries the raw path and query (portal tokens, codes): it is never
    # written, with or without `--no-access-log` (propagating it to root used to defeat that flag).
    # The app writes its own line instead (noderr.api.access: route template, no query string),
    # from ObservabilityMiddleware; raise that logger's level to silence it.
    uv_access = logging.getLogger("uvicorn.access")
    uv_access.handlers = [logging.NullHandler()]
    uv_access.propagate = False
    # httpx logs every request URL at INFO; outgoing URLs can carry presigned signatures or tokens.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def ensure_logging_configured(settings: Settings) -> None:
    """Configure logging at app start-up unless the process (or a test) already did."""
    if not any(getattr(h, "_noderr_handler", False) for h in logging.getLogger().handlers):
        configure_logging(settings)


# --- metrics -----------------------------------------------------------------------------------


class BusinessCollector(Collector):
    """Gauges read from the database at scrape time (cheap GROUP BY counts)."""

    def __init__(self, app: FastAPI):
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("noderr_business_metrics_up",
                               "1 when the business gauges could be read from the database")
        factory = getattr(self._app.state, "session_factory", None)
        if factory is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            with factory() as session:
                statuses = node_status_counts(session)
                alerts = open_alert_count(session)
                backlog = outbox_backlog(session)
                session.rollback()
        except Exception:  # the scrape still answers; the database error is in the API log
            logging.getLogger(__name__).exception("business metrics unavailable")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        nodes = GaugeMetricFamily("noderr_nodes", "Nodes per status", labels=["status"])
        for status, n in sorted(statuses.items()):
            nodes.add_metric([status], n)
        yield nodes
        open_alerts = GaugeMetricFamily("noderr_open_alerts", "Alerts not yet closed")
        open_alerts.add_metric([], alerts)
        yield open_alerts
        outbox = GaugeMetricFamily("noderr_outbox_unsent_messages",
                                   "Outbox messages not yet sent", labels=["kind", "status"])
        for (kind, status), n in sorted(backlog.items()):
            outbox.add_metric([kind, status], n)
        yield outbox


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR when set (prometheus_client reads the same variable)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ApiMetrics:
    """The API's own registry and instruments.

    In multiprocess mode the instruments are registered nowhere (their values live in the shared
    directory) and the scrape registry holds a MultiProcessCollector over that directory plus the
    business gauges, which are read from the database at scrape time and so need no merging.
    """

    def __init__(self, app: FastAPI):
        self.registry = CollectorRegistry(auto_describe=True)
        shared_dir = multiprocess_dir()
        instruments = None if shared_dir else self.registry
        if shared_dir:
            multiprocess.MultiProcessCollector(self.registry, path=shared_dir)
            # A worker that exits (uvicorn replaces it) must drop out of the live gauges; its
            # counters stay in the sum, so totals never go down.
            atexit.register(multiprocess.mark_process_dead, os.getpid(), shared_dir)
        self.requests = Counter(
            "noderr_api_requests", "HTTP requests served", ["method", "route", "status"],
            registry=instruments,
        )
        self.latency = Histogram(
            "noderr_api_request_duration_seconds", "Time to serve a request",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=instruments,
        )
        self.in_progress = Gauge(
            "noderr_api_requests_in_progress", "Requests being served", ["method"],
            registry=instruments, multiprocess_mode="livesum",
        )
        self.registry.register(BusinessCollector(app))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def route_template(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if path else UNMATCHED_ROUTE


def incoming_request_id(scope: MutableMapping[str, Any]) -> str | None:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", ()):
        if name == wanted:
            text = value.decode("latin-1").strip()
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


class ObservabilityMiddleware:
    """Request id, metrics and access log for every HTTP request (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger(ACCESS_LOGGER)
        # Request ids: a random prefix per process and a counter (32 hex digits, unique across
        # workers) — uuid4 per request cost a system call on every request.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or f"{self._id_prefix}{next(self._id_counter):016x}"
        token = _request_id.set(request_id)
        method = scope.get("method", "GET")
        status_code = 500
        response_started = False
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_request_id(message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                message = dict(message)
                message["headers"] = [
                    h for h in message.get("headers", []) if h[0].lower() != header[0]
                ] + [header]
            await send(message)

        self.metrics.in_progress.labels(method).inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            status_code = 500
            self.log.exception(
                "unhandled error", extra={"method": method, "route": route_template(scope)}
            )
            if response_started:
                raise
            # Answer here so the caller gets the request id to quote; the error is logged above.
            body = json.dumps({"detail": "internal server error", "request_id": request_id}).encode()
            await send({
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), header],
            })
            await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_progress.labels(method).dec()
            route = route_template(scope)
            path = scope.get("path", "")
            if path != "/metrics":
                self.metrics.observe(method, route, status_code, elapsed)
            level = logging.DEBUG if path in QUIET_PATHS and status_code < 400 else logging.INFO
            self.log.log(
                level,
                f"{method} {route} {status_code}",
                extra={
                    "method": method,
                    "route": route,
                    # The raw path only when no route matched (tokens live in matched paths).
                    "path": redact(path) if route == UNMATCHED_ROUTE else route,
                    "status": status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            _request_id.reset(token)


def _metrics_token(settings: Settings) -> str:
    # NODERR_METRICS_TOKEN (optional): when set, /metrics needs `Authorization: Bearer <token>`.
    # Read defensively until the shared Settings object gains the field.
    value = getattr(settings, "metrics_token", None)
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def install_observability(app: FastAPI, settings: Settings) -> ApiMetrics:
    """Add the middleware and `GET /metrics` to the app (once); returns the app's metrics."""
    existing = getattr(app.state, "metrics", None)
    if isinstance(existing, ApiMetrics):
        return existing
    metrics = ApiMetrics(app)
    app.state.metrics = metrics
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    token_hash = sha256_hex(_metrics_token(settings)) if _metrics_token(settings) else None

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        if token_hash is None and not settings.is_local:
            # Settings refuse to start without a token outside local; never serve it open there.
            raise HTTPException(status_code=401, detail="/metrics needs NODERR_METRICS_TOKEN to be set",
                                headers={"WWW-Authenticate": "Bearer"})
        if token_hash is not None:
            given = request.headers.get("authorization", "")
            scheme, _, credentials = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                sha256_hex(credentials.strip()), token_hash
            ):
                raise HTTPException(
                    status_code=401,
                    detail="/metrics needs 'Authorization: Bearer <NODERR_METRICS_TOKEN>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
