"""The control-plane ASGI app: `uvicorn api.main:app`."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import anyio.to_thread

from fastapi import FastAPI

from api.admission import AdmissionControl, AdmissionLimits
from api.body_deadline import BodyDeadlineMiddleware
from api.deps import node_key_lookups
from api.heartbeat_writer import heartbeat_writer
from api.input_guard import RefuseNulMiddleware
from api.request_guard import RequestGuardMiddleware
from api.security_headers import SecurityHeadersMiddleware
from api.observability import ensure_logging_configured, install_observability
from api.routes import admin, beacon, node_image, nodes, portal, probes, rewards, tasks, webhooks
from api.routes import operator as operator_routes
from noderr_core.bootstrap import ensure_bootstrap_admin
from noderr_core.db import engine_for_settings, make_session_factory
from noderr_core.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    limits = AdmissionLimits(settings.api_max_in_flight, settings.api_max_queued,
                             settings.api_queue_wait_seconds, settings.api_retry_after_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ensure_logging_configured(settings)
        # Pool and threadpool sized above the admission limit: no request can wait for a thread
        # and a connection at once (api/admission.py says why).
        engine = engine_for_settings(settings, pool_size=limits.pool_size(), max_overflow=0,
                                     pool_timeout=settings.db_pool_timeout_seconds)
        anyio.to_thread.current_default_thread_limiter().total_tokens = limits.threads()
        app.state.settings = settings
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.task_transactions = asyncio.Semaphore(settings.api_max_task_transactions)
        with app.state.session_factory() as session:
            ensure_bootstrap_admin(session, settings)
            session.commit()
        beacon.load_beacon_signer(app.state, settings)
        # Group calls of the node protocol (api/batching.py): node-key lookups and heartbeats.
        app.state.node_key_lookups = node_key_lookups(
            app.state.session_factory, max_pending=settings.api_heartbeat_max_pending)
        app.state.heartbeat_writer = heartbeat_writer(
            app.state.session_factory, max_pending=settings.api_heartbeat_max_pending)
        yield
        # Heartbeats already accepted are committed before the process goes (their requests are
        # answered 200 only then); new ones are shed while it drains.
        await app.state.node_key_lookups.drain()
        await app.state.heartbeat_writer.drain()
        engine.dispose()

    app = FastAPI(
        title="Noderr control plane",
        version="1.0.0",
        lifespan=lifespan,
        # The interactive docs and the schema they render are for development only: outside local
        # and test, /docs, /redoc and /openapi.json all answer 404 (the route inventory is not
        # published to the internet; tests/test_route_authz.py checks it).
        docs_url="/docs" if settings.is_local else None,
        redoc_url="/redoc" if settings.is_local else None,
        openapi_url="/openapi.json" if settings.is_local else None,
    )
    # Added before install_observability, so it runs inside that middleware: its 422s are counted
    # and logged with a request id like any other answer.
    app.add_middleware(RefuseNulMiddleware)
    # Body limits and key-format checks, before anything reads a body (api/request_guard.py).
    app.add_middleware(RequestGuardMiddleware)
    # Inside admission: an admitted request's body must arrive in time (api/body_deadline.py).
    app.add_middleware(BodyDeadlineMiddleware, timeout_seconds=settings.api_body_timeout_seconds,
                       min_rate=settings.api_body_min_rate)
    app.add_middleware(AdmissionControl, limits=limits)
    install_observability(app, settings)
    # Outermost: every answer, the observability middleware's own 500 included, gets the headers.
    app.add_middleware(SecurityHeadersMiddleware, https_only=not settings.is_local)
    # Routes are matched in this order, one by one: the node protocol (every node, every 30 s)
    # and the task routes come first so their requests are not matched against every admin page before.
    for module in (nodes, tasks, webhooks, admin, portal, beacon, rewards, probes, node_image):
        app.include_router(module.router)
    app.include_router(operator_routes.public_router)
    app.include_router(operator_routes.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    return app


app = create_app()
