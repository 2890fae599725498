"""Readiness probe: `GET /readyz` answers 200 only while this process can reach the database.

A load balancer or Kubernetes readinessProbe takes a replica out of rotation when its database
connection is gone (and back in when it returns) without restarting it; `/healthz` stays the
liveness probe (the process serves at all). The check is one `SELECT 1` on the app's engine,
bounded by the pool's own timeout; the answer never includes the error (it may name hosts), which
goes to the log instead.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    engine = getattr(request.app.state, "engine", None)
    try:
        if engine is None:
            raise RuntimeError("the app has not started (no database engine)")
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        log.warning("readiness check failed: database unreachable", exc_info=True)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return JSONResponse({"status": "ready", "database": "ok"})
