"""Node-facing routes: identity and heartbeats (telemetry)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from api.deps import (
    NODE_AUTH_RESPONSES,
    UNREADABLE_BODY_RESPONSES,
    CurrentNode,
    NodeRoute,
    SessionDep,
    run_in_transaction,
    SettingsDep,
)
from noderr_core.tables import Node
from noderr_core.telemetry import HeartbeatReceipt, record_heartbeat
from noderr_protocol.work import HeartbeatAck, HeartbeatIn

router = APIRouter(prefix="/v1/nodes", tags=["node protocol"],
                   responses=NODE_AUTH_RESPONSES, route_class=NodeRoute)


@router.post("/heartbeat", response_model=HeartbeatAck, responses=UNREADABLE_BODY_RESPONSES)
async def post_heartbeat(
    body: HeartbeatIn, node: CurrentNode, request: Request, settings: SettingsDep
) -> HeartbeatAck:
    # The hottest route (every node, every 30 s): async, with the one short transaction in a
    # single threadpool call, instead of a threadpool round trip per sync dependency.
    receipt: HeartbeatReceipt = await run_in_transaction(request, record_heartbeat, node.id, body)
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
