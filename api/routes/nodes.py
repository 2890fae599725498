"""Node-facing routes: identity and heartbeats (telemetry)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from api.batching import BatcherFull
from api.deps import (
    NODE_AUTH_RESPONSES,
    UNREADABLE_BODY_RESPONSES,
    CurrentNode,
    ErrorDetail,
    NodeRoute,
    SessionDep,
    shed_exception,
)
from noderr_core.tables import Node
from noderr_protocol.work import HeartbeatAck, HeartbeatIn

HEARTBEAT_SHED_RESPONSES: dict[int | str, dict] = {
    503: {"model": ErrorDetail, "description": "the process is at capacity: retry after the "
          "`Retry-After` seconds, with jitter"},
}

router = APIRouter(prefix="/v1/nodes", tags=["node protocol"],
                   responses=NODE_AUTH_RESPONSES, route_class=NodeRoute)


@router.post("/heartbeat", response_model=HeartbeatAck,
             responses={**UNREADABLE_BODY_RESPONSES, **HEARTBEAT_SHED_RESPONSES})
async def post_heartbeat(body: HeartbeatIn, node: CurrentNode, request: Request) -> HeartbeatAck:
    # The hottest route (every node, every 30 s): async, and written by the process's group commit
    # (api/heartbeat_writer.py), which answers once the heartbeat's batch is committed.
    settings = request.app.state.settings
    try:
        receipt = await request.app.state.heartbeat_writer.submit((node.id, body))
    except BatcherFull as full:
        raise shed_exception(settings, str(full)) from None
    return HeartbeatAck(
        server_time=receipt.received_at,
        node_status=receipt.node_status,
        next_heartbeat_seconds=min(30.0, settings.heartbeat_offline_after_seconds / 4),
    )


@router.get("/me")
def get_me(node: CurrentNode, session: SessionDep) -> dict:
    # Read fresh: the authenticated principal is a cached snapshot.
    row = session.execute(
        select(Node.status, Node.last_heartbeat_at).where(Node.id == node.id)
    ).one()
    return {
        "node_id": node.id,
        "status": row.status,
        "tier": node.tier,
        "region": node.region,
        "last_heartbeat_at": row.last_heartbeat_at,
    }
