"""Evidence of misbehaviour: when a node's judged results prove it wrong often enough to slash.

The threshold (docs/staking.md, "Stake and slashing"): at least K (`slashing_min_invalid`, >= 2)
*proven* invalid results among the node's last N (`slashing_recent_results`) judged results, all
judged within the last `slashing_window_hours`, and after the evidence of the node's previous case.

A judged result is one whose outcome is valid or invalid. What never counts:
- the node's own error reports (outcome "error"), inconclusive tasks, and pending results;
- an invalid result without proof: proof is a quorum of at least two agreeing nodes of distinct
  operators, none of them the accused's operator (`validated_by = "quorum"`), or a challenge task
  with a known answer (`tasks.challenge_expected` set, where that column exists);
- a result judged while the control plane was degraded (`degraded_reason`): no heartbeat from any
  node was processed in the heartbeat-offline threshold before it, or node_offline alerts were
  open for at least half of the (at least two) registered nodes at that moment: a platform
  outage, not the nodes' fault.

Everything here only reads; `noderr_core.slashing.cases` acts on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from noderr_core.settings import Settings
from noderr_core.tables import Heartbeat, Node, NodeStatus
from noderr_core.tables.network import Alert, AlertKind
from noderr_core.tables.staking import ACTIVE_CASE_STATUSES, SlashingCase
from noderr_core.tables.tasks import ResultOutcome, Task, TaskAssignment

A = TaskAssignment.__table__
T = Task.__table__
VALID = ResultOutcome.VALID.value
INVALID = ResultOutcome.INVALID.value
MAX_CANDIDATES = 200


@dataclass(frozen=True)
class SlashingPolicy:
    min_invalid: int  # K
    recent_results: int  # N
    window: timedelta
    challenge: timedelta
    fraction_bps: int
    heartbeat_offline_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> SlashingPolicy:
        return cls(
            min_invalid=settings.slashing_min_invalid,
            recent_results=max(settings.slashing_recent_results, settings.slashing_min_invalid),
            window=timedelta(hours=settings.slashing_window_hours),
            challenge=timedelta(seconds=settings.slashing_challenge_seconds),
            fraction_bps=settings.slashing_fraction_bps,
            heartbeat_offline_after=timedelta(seconds=settings.heartbeat_offline_after_seconds),
        )


@dataclass
class Evidence:
    node_id: str
    operator_id: int
    items: list[dict]  # proven invalid results, newest first
    judged_count: int  # judged results looked at (<= N)
    window_start: datetime
    window_end: datetime
    discarded: list[dict] = field(default_factory=list)  # invalid but unproven or while degraded

    @property
    def key(self) -> str:
        ids = ",".join(str(i["assignment_id"]) for i in sorted(self.items, key=lambda i: i["assignment_id"]))
        return hashlib.sha256(f"{self.node_id}:{ids}".encode()).hexdigest()


def evidence_since(session: Session, node_id: str, now: datetime, policy: SlashingPolicy) -> datetime:
    """Results judged after this time may count: the window start, or the last case's evidence."""
    start = now - policy.window
    last = session.scalar(select(func.max(SlashingCase.window_end)).where(SlashingCase.node_id == node_id))
    return max(start, last) if last is not None else start


def find_candidate_nodes(session: Session, policy: SlashingPolicy, now: datetime,
                         *, limit: int = MAX_CANDIDATES) -> list[str]:
    """Nodes with >= K invalid results in the window and no open case (the cheap first cut)."""
    active = select(SlashingCase.node_id).where(SlashingCase.status.in_(ACTIVE_CASE_STATUSES))
    stmt = (
        select(A.c.node_id)
        .where(A.c.outcome == INVALID, A.c.judged_at > now - policy.window, A.c.judged_at <= now,
               A.c.node_id.not_in(active))
        .group_by(A.c.node_id)
        .having(func.count() >= policy.min_invalid)
        .order_by(A.c.node_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def degraded_reason(session: Session, at: datetime, policy: SlashingPolicy, *, accused: str) -> str | None:
    """Why the control plane counts as degraded at `at`, or None when it was healthy."""
    since = at - policy.heartbeat_offline_after
    heard = session.scalar(
        select(Heartbeat.id).where(Heartbeat.received_at > since, Heartbeat.received_at <= at,
                                   Heartbeat.node_id != accused).limit(1)
    )
    if heard is None:
        return (f"no heartbeat from any other node was processed in the "
                f"{int(policy.heartbeat_offline_after.total_seconds())} s before {at.isoformat()}")
    registered = session.scalar(
        select(func.count()).select_from(Node).where(
            Node.created_at <= at, Node.status.not_in([NodeStatus.REMOVED, NodeStatus.PROVISIONED]))
    ) or 0
    offline = session.scalar(
        select(func.count(func.distinct(Alert.node_id))).where(
            Alert.kind == AlertKind.NODE_OFFLINE, Alert.opened_at <= at,
            or_(Alert.closed_at.is_(None), Alert.closed_at > at))
    ) or 0
    if registered >= 2 and offline * 2 >= registered:
        return f"{offline} of {registered} nodes were offline at {at.isoformat()} (a platform outage)"
    return None


def _challenge_column():
    return T.c.get("challenge_expected")


def gather_evidence(session: Session, node_id: str, policy: SlashingPolicy, now: datetime) -> Evidence | None:
    """The node's proven invalid results meeting the threshold, or None (read-only)."""
    node = session.get(Node, node_id)
    if node is None:
        return None
    since = evidence_since(session, node_id, now, policy)
    challenge = _challenge_column()
    cols = [A.c.id, A.c.task_id, A.c.outcome, A.c.judged_at, A.c.result, T.c.result.label("validated_result"),
            T.c.agreeing_node_ids, T.c.validated_by]
    if challenge is not None:
        cols.append(challenge.label("challenge_expected"))
    rows = session.execute(
        select(*cols)
        .join(T, T.c.id == A.c.task_id)
        .where(A.c.node_id == node_id, A.c.outcome.in_([VALID, INVALID]),
               and_(A.c.judged_at > since, A.c.judged_at <= now))
        .order_by(A.c.judged_at.desc(), A.c.id.desc())
        .limit(policy.recent_results)
    ).all()
    invalid = [r for r in rows if r.outcome == INVALID]
    if len(invalid) < policy.min_invalid:
        return None
    agreeing = {n for r in invalid for n in (r.agreeing_node_ids or [])}
    operator_of = dict(session.execute(select(Node.id, Node.operator_id).where(Node.id.in_(agreeing))).all()) \
        if agreeing else {}
    items: list[dict] = []
    discarded: list[dict] = []
    for r in invalid:
        item = {
            "assignment_id": r.id,
            "task_id": r.task_id,
            "judged_at": r.judged_at.isoformat(),
            "node_result": r.result,
            "validated_result": r.validated_result,
            "agreeing_node_ids": list(r.agreeing_node_ids or []),
            "agreeing_operator_ids": sorted({operator_of[n] for n in (r.agreeing_node_ids or []) if n in operator_of}),
        }
        others = [operator_of.get(n) for n in item["agreeing_node_ids"] if n != node_id]
        if challenge is not None and getattr(r, "challenge_expected", None) is not None:
            item["kind"] = "challenge"
        elif (r.validated_by == "quorum" and None not in others and len(set(others)) >= 2
              and len(set(others)) == len(others) and node.operator_id not in others):
            item["kind"] = "quorum"
        else:
            discarded.append(item | {"why": "no quorum of distinct other operators proves it wrong"})
            continue
        why = degraded_reason(session, r.judged_at, policy, accused=node_id)
        if why:
            discarded.append(item | {"why": f"control plane degraded: {why}"})
            continue
        items.append(item)
    if len(items) < policy.min_invalid:
        return None
    judged = [r.judged_at for r in rows]
    return Evidence(node_id=node_id, operator_id=node.operator_id, items=items, judged_count=len(rows),
                    window_start=min(judged), window_end=max(judged), discarded=discarded)
