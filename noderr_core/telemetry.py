"""Recording node heartbeats and the node state changes they imply."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from noderr_core.audit import record_audit
from noderr_core.tables import ApplicationStatus, Heartbeat, Node, NodeStatus, OperatorApplication
from noderr_core.timeutil import utcnow
from noderr_protocol.work import HeartbeatIn


def record_heartbeat(session: Session, node: Node, body: HeartbeatIn) -> Heartbeat:
    now = utcnow()
    beat = Heartbeat(node_id=node.id, received_at=now, **body.model_dump())
    session.add(beat)
    node.last_heartbeat_at = now
    if node.status in (NodeStatus.PROVISIONED, NodeStatus.OFFLINE):
        previous = node.status
        node.status = NodeStatus.ONLINE
        node.status_reason = None
        record_audit(
            session,
            actor_type="system",
            actor_id=None,
            action="node.online",
            subject_type="node",
            subject_id=node.id,
            details={"previous_status": previous},
        )
        if previous == NodeStatus.PROVISIONED and node.application_id is not None:
            # The operator's first node is up: the application's journey is complete.
            session.execute(
                update(OperatorApplication)
                .where(
                    OperatorApplication.id == node.application_id,
                    OperatorApplication.status == ApplicationStatus.PROVISIONED,
                )
                .values(
                    status=ApplicationStatus.ACTIVE,
                    status_version=OperatorApplication.status_version + 1,
                    updated_at=now,
                )
            )
    session.flush()
    return beat


def latest_heartbeat(session: Session, node_id: str) -> Heartbeat | None:
    return session.scalar(
        select(Heartbeat)
        .where(Heartbeat.node_id == node_id)
        .order_by(Heartbeat.received_at.desc())
        .limit(1)
    )
