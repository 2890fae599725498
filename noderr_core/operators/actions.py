"""What a signed-in operator may do for themselves: rotate a node's key, ask for another node.

Both go through the paths the admin uses, so nothing new needs to be trusted:
- a key rotation is `reissue_download_link` (new key, earlier links revoked, a single-use bundle
  link by e-mail through the outbox), refused for a node that is not the operator's;
- a further node is a new application in the onboarding state machine, filled from the operator's
  record (same e-mail and proven wallet): the screening sensor screens it, an admin approves or
  rejects it on the dashboard, and the decision sensor provisions a node for the same operator.
  One open request at a time, so a request's cost is bounded by the operator's own data.
"""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.onboarding.provisioning import reissue_download_link
from noderr_core.tables import ApplicationStatus, Node, NodeStatus, Operator, OperatorApplication
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow

OPEN_STATUSES = (ApplicationStatus.RECEIVED, ApplicationStatus.SCREENED,
                 ApplicationStatus.PENDING_REVIEW, ApplicationStatus.APPROVED)
REQUEST_SOURCE = "operator_portal"
MAX_FIELD = 64
MAX_NOTE = 1000


class OperatorActionRefused(ValueError):
    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def operator_actor(operator: Operator) -> Actor:
    return Actor("operator", operator.id, operator.email)


def rotate_own_node_key(session: Session, operator: Operator, node_id: str, settings: Settings) -> None:
    node = session.get(Node, node_id)
    if node is None or node.operator_id != operator.id:
        raise OperatorActionRefused(f"node {node_id} is not one of your nodes", status=404)
    if node.status == NodeStatus.REMOVED:
        raise OperatorActionRefused(f"node {node_id} was removed; a removed node gets no new key")
    reissue_download_link(session, node_id=node_id, settings=settings, actor=operator_actor(operator))


def open_node_request(session: Session, operator: Operator) -> OperatorApplication | None:
    return session.scalar(
        select(OperatorApplication)
        .where(OperatorApplication.operator_id == operator.id,
               OperatorApplication.status.in_([s.value for s in OPEN_STATUSES]))
        .order_by(OperatorApplication.id.desc()).limit(1)
    )


def request_further_node(session: Session, operator: Operator, *, region: str | None,
                         tier: str | None, note: str | None) -> OperatorApplication:
    """Queue an application for one more node, for the admin to decide like any other."""
    if operator.wallet_proven_at is None:
        raise OperatorActionRefused("prove your payout wallet first: sign in with it", status=403)
    region, tier, note = ((v or "").strip() or None for v in (region, tier, note))
    for label, value, limit in (("region", region, MAX_FIELD), ("tier", tier, MAX_FIELD),
                                ("note", note, MAX_NOTE)):
        if value and len(value) > limit:
            raise OperatorActionRefused(f"the {label} is too long (at most {limit} characters)", status=400)
    pending = open_node_request(session, operator)
    if pending is not None:
        raise OperatorActionRefused(
            f"your request #{pending.id} is still {pending.status.replace('_', ' ')}: "
            "wait for the admins' decision before asking for another node")
    now = utcnow()
    request = {"source": REQUEST_SOURCE, "operator_id": operator.id, "region": region,
               "node_tier": tier, "note": note, "requested_at": now.isoformat()}
    app = OperatorApplication(
        form_response_token=f"{REQUEST_SOURCE}:{operator.id}:{secrets.token_hex(8)}",
        form_id=REQUEST_SOURCE,
        submitted_at=now,
        received_at=now,
        raw_payload=json.dumps(request, sort_keys=True),
        answers={k: v for k, v in request.items() if k in ("region", "node_tier", "note") and v},
        unmapped_answers={},
        hidden_fields={"source": REQUEST_SOURCE},
        full_name=operator.full_name,
        email=operator.email,
        wallet_address=operator.wallet_address,
        node_tier=tier,
        region=region,
        status=ApplicationStatus.RECEIVED,
        status_version=1,
        operator_id=operator.id,
    )
    session.add(app)
    session.flush()
    audit(session, operator_actor(operator), "operator.node_requested", "application", app.id,
          region=region, tier=tier)
    return app
