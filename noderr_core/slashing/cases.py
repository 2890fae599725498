"""Slashing cases: open with evidence, dismiss in the challenge window, slash through the outbox.

State machine (tables/staking.py SlashingCaseStatus):
  open --(admin dismisses within the window)--> dismissed
  open --(window over: slash queued in the chain outbox)--> slashing --(mined)--> slashed
                                                                      --(refused)--> failed
Every transition is a conditional UPDATE on the expected status (a repeated or racing run changes
nothing twice), writes an audit entry, and e-mails the operator through the outbox. A case slashes
`fraction_bps` of the node's bond once: the contract keys the slash by the case's `chain_case_id`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.email import enqueue_email
from noderr_core.outbox import enqueue
from noderr_core.settings import Settings
from noderr_core.slashing.evidence import SlashingPolicy, gather_evidence
from noderr_core.tables import Operator, OutboxMessage
from noderr_core.tables.staking import SlashingCase, SlashingCaseStatus
from noderr_core.timeutil import utcnow

EMAIL_TEMPLATE = "slashing_case"
SLASH_ACTION = "slash_stake"
MAX_CASES_PER_RUN = 200


class CaseNotDismissable(ValueError):
    """The case is not open (already dismissed, slashing or decided)."""


def chain_case_id(evidence_key: str) -> str:
    return "0x" + hashlib.sha256(f"noderr:slashing-case:{evidence_key}".encode()).hexdigest()


@dataclass
class SlashingReport:
    opened: list[int] = field(default_factory=list)
    no_longer_proven: list[str] = field(default_factory=list)
    slashes_queued: list[int] = field(default_factory=list)
    unchanged_cases: list[int] = field(default_factory=list)

    def as_metadata(self) -> dict:
        return {"cases_opened": len(self.opened), "no_longer_proven": len(self.no_longer_proven),
                "slashes_queued": len(self.slashes_queued), "unchanged_cases": len(self.unchanged_cases)}


def _notify(session: Session, case: SlashingCase, event: str, settings: Settings | None, **extra) -> None:
    operator = session.get(Operator, case.operator_id)
    if operator is None or not operator.email:
        return
    enqueue_email(
        session,
        template=EMAIL_TEMPLATE,
        to=operator.email,
        context={
            "event": event,
            "operator_name": operator.full_name,
            "node_id": case.node_id,
            "case_id": case.id,
            "invalid_count": case.invalid_count,
            "judged_count": case.judged_count,
            "window_start": case.window_start.isoformat(),
            "window_end": case.window_end.isoformat(),
            "challenge_ends_at": case.challenge_ends_at.isoformat(),
            "fraction_percent": f"{case.fraction_bps / 100:g}",
            "tasks": [i["task_id"] for i in case.evidence][:20],
            "contact": settings.mail_from if settings else "the Noderr admins",
            **extra,
        },
        idempotency_key=f"email:{EMAIL_TEMPLATE}:{event}:case:{case.id}",
        subject_type="node",
        subject_id=case.node_id,
    )


def open_case(session: Session, node_id: str, *, policy: SlashingPolicy, settings: Settings, actor: Actor,
              now: datetime | None = None) -> SlashingCase | None:
    """Open a case if the evidence (re-gathered now) meets the threshold; None otherwise."""
    now = now or utcnow()
    evidence = gather_evidence(session, node_id, policy, now)
    if evidence is None:
        return None
    case = SlashingCase(
        node_id=node_id, operator_id=evidence.operator_id, status=SlashingCaseStatus.OPEN,
        evidence_key=evidence.key, evidence=evidence.items, invalid_count=len(evidence.items),
        judged_count=evidence.judged_count, window_start=evidence.window_start,
        window_end=evidence.window_end, fraction_bps=policy.fraction_bps, opened_at=now,
        challenge_ends_at=now + policy.challenge, chain_case_id=chain_case_id(evidence.key),
    )
    try:
        with session.begin_nested():
            session.add(case)
            session.flush()
    except IntegrityError:
        return None  # the same evidence, or another open case for the node: opened by another run
    audit(session, actor, "slashing.case_opened", "node", node_id, case_id=case.id,
          invalid=case.invalid_count, judged=case.judged_count, fraction_bps=case.fraction_bps,
          challenge_ends_at=case.challenge_ends_at.isoformat(),
          tasks=[i["task_id"] for i in evidence.items],
          discarded=[{"task_id": d["task_id"], "why": d["why"]} for d in evidence.discarded])
    _notify(session, case, "opened", settings)
    return case


def dismiss_case(session: Session, case_id: int, *, actor: Actor, reason: str, settings: Settings,
                 now: datetime | None = None) -> SlashingCase:
    """An admin's decision in the challenge window: the case slashes nothing."""
    now = now or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a dismissal needs a reason (it is e-mailed to the operator and audited)")
    changed = session.execute(
        update(SlashingCase)
        .where(SlashingCase.id == case_id, SlashingCase.status == SlashingCaseStatus.OPEN)
        .values(status=SlashingCaseStatus.DISMISSED, decided_at=now, decided_by=actor.label,
                dismiss_reason=reason[:2000])
    ).rowcount
    case = session.get(SlashingCase, case_id, populate_existing=True)
    if case is None:
        raise LookupError(f"no slashing case {case_id}")
    if not changed:
        raise CaseNotDismissable(f"case {case_id} is {case.status}: only an open case can be dismissed")
    audit(session, actor, "slashing.case_dismissed", "node", case.node_id, case_id=case.id, reason=reason)
    _notify(session, case, "dismissed", settings, dismiss_reason=reason)
    return case


def due_case_ids(session: Session, now: datetime, *, limit: int = MAX_CASES_PER_RUN) -> list[int]:
    """Open cases whose challenge window is over (read-only)."""
    return list(session.scalars(
        select(SlashingCase.id)
        .where(SlashingCase.status == SlashingCaseStatus.OPEN, SlashingCase.challenge_ends_at <= now)
        .order_by(SlashingCase.id).limit(limit)
    ))


def queue_slash(session: Session, case_id: int, *, actor: Actor, now: datetime | None = None) -> OutboxMessage | None:
    """open -> slashing, with the chain outbox row that slashes; None if not due (or not open)."""
    now = now or utcnow()
    changed = session.execute(
        update(SlashingCase)
        .where(SlashingCase.id == case_id, SlashingCase.status == SlashingCaseStatus.OPEN,
               SlashingCase.challenge_ends_at <= now)
        .values(status=SlashingCaseStatus.SLASHING, decided_at=now, decided_by=actor.label)
    ).rowcount
    if not changed:
        return None
    case = session.get(SlashingCase, case_id, populate_existing=True)
    msg = enqueue(
        session, kind="chain", idempotency_key=f"chain:{SLASH_ACTION}:case:{case.id}",
        payload={"action": SLASH_ACTION, "case_id": case.id, "node_id": case.node_id,
                 "chain_case_id": case.chain_case_id, "fraction_bps": case.fraction_bps},
        subject_type="node", subject_id=case.node_id,
    )
    case.outbox_id = msg.id
    audit(session, actor, "slashing.slash_queued", "node", case.node_id, case_id=case.id,
          outbox_id=msg.id, fraction_bps=case.fraction_bps)
    return msg


def apply_slashing_decisions(session: Session, *, node_ids: list[str], case_ids: list[int],
                             settings: Settings, actor: Actor, now: datetime | None = None) -> SlashingReport:
    """What the slashing job does with the sensor's candidates; each step re-checks its condition."""
    now = now or utcnow()
    policy = SlashingPolicy.from_settings(settings)
    report = SlashingReport()
    for node_id in node_ids:
        case = open_case(session, node_id, policy=policy, settings=settings, actor=actor, now=now)
        if case is None:
            report.no_longer_proven.append(node_id)
        else:
            report.opened.append(case.id)
    for case_id in case_ids:
        if queue_slash(session, case_id, actor=actor, now=now) is None:
            report.unchanged_cases.append(case_id)
        else:
            report.slashes_queued.append(case_id)
    return report


def record_slash_result(session: Session, payload: dict, *, ok: bool, detail: dict) -> None:
    """The chain relay's outcome for a slash_stake row: slashing -> slashed | failed."""
    case = session.get(SlashingCase, payload.get("case_id"))
    if case is None or case.status != SlashingCaseStatus.SLASHING:
        return
    actor = Actor.system("chain relay")
    if ok:
        case.status = SlashingCaseStatus.SLASHED
        case.slashed_amount = int(detail.get("slashed_amount") or 0)
        case.tx_hash = detail.get("tx_hash")
        audit(session, actor, "slashing.slashed", "node", case.node_id, case_id=case.id,
              amount=str(case.slashed_amount), tx_hash=case.tx_hash)
    else:
        case.status = SlashingCaseStatus.FAILED
        case.failure_reason = str(detail.get("error") or "the slash was refused")[:2000]
        audit(session, actor, "slashing.slash_failed", "node", case.node_id, case_id=case.id,
              reason=case.failure_reason)
    _notify(session, case, "slashed" if ok else "failed", None,
            slashed_amount=str(case.slashed_amount or 0), failure_reason=case.failure_reason)


def cases_for_node(session: Session, node_id: str, *, limit: int = 20) -> list[SlashingCase]:
    """The node's cases, newest first (the admin's and the operator's node pages)."""
    return list(session.scalars(
        select(SlashingCase).where(SlashingCase.node_id == node_id).order_by(SlashingCase.id.desc()).limit(limit)
    ))
