"""Node-facing routes: identity and heartbeats (telemetry)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import (
    NODE_AUTH_RESPONSES,
    UNREADABLE_BODY_RESPONSES,
    CurrentNode,
    SessionDep,
    SettingsDep,
)
from noderr_core.telemetry import record_heartbeat
from noderr_protocol.work import HeartbeatAck, HeartbeatIn

router = APIRouter(prefix="/v1/nodes", tags=["node protocol"],
                   responses=NODE_AUTH_RESPONSES)


@router.post("/heartbeat", response_model=HeartbeatAck, responses=UNREADABLE_BODY_RESPONSES)
def post_heartbeat(
    body: HeartbeatIn, node: CurrentNode, session: SessionDep, settings: SettingsDep
) -> HeartbeatAck:
    beat = record_heartbeat(session, node, body)
    return HeartbeatAck(
        server_time=beat.received_at,
        node_status=node.status,
        next_heartbeat_seconds=min(30.0, settings.heartbeat_offline_after_seconds / 4),
    )


@router.get("/me")
def get_me(node: CurrentNode) -> dict:
    return {
        "node_id": node.id,
        "status": node.status,
        "tier": node.tier,
        "region": node.region,
        "last_heartbeat_at": node.last_heartbeat_at,
    }
