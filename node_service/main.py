"""The node's HTTP API: POST /v1/infer, GET /v1/models, /healthz, /readyz and /metrics.

`app` is the ASGI entry point (`uvicorn node_service.main:app`); settings are read and the node
started in the lifespan, never at import time. The routes are thin: validation lives in
`signature`, batching in `batching`, the node's lifecycle in `agent`.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from node_service import AGENT_VERSION
from node_service.agent import NodeAgent
from node_service.batching import BatcherStopped, InferenceFailed, InferenceRejected
from node_service.settings import NodeSettings
from node_service.signature import InputError, TooManyRows, expected_signature, validate_inputs


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(default=None, description="model name; optional if one is served")
    inputs: dict[str, Any] = Field(description="input name -> rows (batch first)")


def create_app(settings: NodeSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        agent = NodeAgent(settings or NodeSettings())
        await agent.start()
        app.state.agent = agent
        try:
            yield
        finally:
            await agent.stop()

    app = FastAPI(title="Noderr inference node", version=AGENT_VERSION, lifespan=lifespan)

    def agent_of(request: Request) -> NodeAgent:
        return request.app.state.agent

    @app.exception_handler(RequestValidationError)
    async def count_malformed_requests(request: Request, exc: RequestValidationError):
        # Bodies FastAPI itself refuses (bad JSON, unknown fields) still count as client errors.
        if request.url.path == "/v1/infer" and hasattr(request.app.state, "agent"):
            agent_of(request).metrics.observe_request("unknown", "client_error")
        return await request_validation_exception_handler(request, exc)

    @app.post("/v1/infer")
    async def infer(body: InferRequest, request: Request) -> JSONResponse:
        agent = agent_of(request)
        started = time.perf_counter()
        models = agent.registry.snapshot()
        if not models:
            return JSONResponse({"detail": "no model is loaded yet: the node is still syncing "
                                 "from the control plane"}, status_code=503,
                                headers={"Retry-After": "5"})
        model = agent.registry.get(body.model)
        if model is None:
            # Never label metrics with a client-supplied name (unbounded cardinality).
            label = "unknown"
            if body.model is None:
                detail = f"this node serves several models {sorted(models)}: name one in 'model'"
                status = 422
            else:
                detail = f"model {body.model!r} is not served here; available: {sorted(models)}"
                status = 404
            agent.metrics.observe_request(label, "client_error")
            return JSONResponse({"detail": detail}, status_code=status)
        try:
            feeds, rows = validate_inputs(model.manifest, body.inputs,
                                          agent.settings.node_max_request_rows)
        except InputError as exc:
            agent.metrics.observe_request(model.name, "client_error")
            return JSONResponse({"detail": str(exc), "expected": exc.expected}, status_code=422)
        except TooManyRows as exc:
            agent.metrics.observe_request(model.name, "client_error")
            return JSONResponse({"detail": str(exc)}, status_code=413)
        try:
            outputs = await agent.batcher.infer(model, feeds, rows)
        except InferenceRejected as exc:
            agent.metrics.observe_request(model.name, "client_error")
            return JSONResponse({"detail": str(exc), "expected": expected_signature(model.manifest)},
                                status_code=422)
        except BatcherStopped as exc:
            agent.metrics.observe_request(model.name, "unavailable")
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except InferenceFailed as exc:
            agent.metrics.observe_request(model.name, "error")
            return JSONResponse({"detail": str(exc)}, status_code=500)
        agent.metrics.observe_request(model.name, "ok", time.perf_counter() - started)
        return JSONResponse({"model": model.name, "version": model.version, "outputs": outputs})

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        agent = agent_of(request)
        return {"models": [expected_signature(m.manifest) | {
            "outputs": [s.model_dump() for s in m.manifest.outputs],
            "sha256": m.manifest.sha256} for m in agent.registry.snapshot().values()]}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        agent = agent_of(request)
        body = {
            "ready": agent.ready,
            "node_id": agent.settings.node_id,
            "models": agent.registry.versions(),
            "synced": agent.sync.synced,
            "serving_from_cache": agent.sync.loaded_from_cache and not agent.sync.synced,
            "beacon_sequence": agent.sync.beacon_sequence,
            "last_sync_at": agent.sync.last_sync_at,
            "last_sync_error": agent.sync.last_error,
            "stopping": agent.stopping.is_set(),
        }
        return JSONResponse(body, status_code=200 if agent.ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(agent_of(request).metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()
