"""Automatic screening of a new application (status received).

Rules (documented in docs/onboarding.md):
- email: present and syntactically valid, else hard failure;
- wallet: present and a 20-byte hex address, else hard failure. A mixed-case address must pass the
  EIP-55 checksum (a failing checksum almost always means a typo that would send rewards nowhere):
  hard failure. An all-lowercase (or all-uppercase) address carries no checksum: accepted with a
  warning note and stored in its checksummed form;
- identity: an existing operator with this email but another wallet, or this wallet under another
  email, is a hard failure (one operator, one payout wallet); the same email + wallet is an existing
  operator adding a node: a note for the reviewer;
- other open applications with the same email or wallet: a note;
- full name, node tier, region missing: a warning note each.

Hard failures reject the application automatically with the reasons (the decision sensor then
queues the rejection email); everything else goes to pending_review with the notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_utils import is_checksum_address, to_checksum_address
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables import ApplicationStatus, Operator, OperatorApplication
from noderr_core.onboarding.applications import get_application_for_update, set_application_status
from noderr_core.timeutil import utcnow

OK, WARNING, HARD_FAIL = "ok", "warning", "hard_fail"

_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_HEX_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class ScreeningResult:
    application_id: int
    status: str  # pending_review | rejected | (unchanged status when already screened)
    notes: list[dict]
    screened: bool  # False when the application was not in `received` (nothing done)


def _note(check: str, level: str, message: str) -> dict:
    return {"check": check, "level": level, "message": message}


def email_is_valid(value: str) -> bool:
    return len(value) <= 320 and bool(_EMAIL_RE.match(value)) and ".." not in value


def check_wallet(value: str | None) -> tuple[dict, str | None]:
    """(note, checksummed address or None)."""
    if not value:
        return _note("wallet", HARD_FAIL, "no wallet address was given: rewards need one"), None
    value = value.strip()
    if not _HEX_ADDRESS_RE.match(value):
        return _note("wallet", HARD_FAIL,
                     f"wallet address {value!r} is not a 0x-prefixed 40-hex-digit address"), None
    body = value[2:]
    if body == body.lower() or body == body.upper():
        return _note("wallet", WARNING,
                     "wallet address has no EIP-55 checksum (single case); accepted and stored as "
                     f"{to_checksum_address(value)} — confirm it with the applicant"), to_checksum_address(value)
    if not is_checksum_address(value):
        return _note("wallet", HARD_FAIL,
                     f"wallet address {value} fails its EIP-55 checksum (probably a typo)"), None
    return _note("wallet", OK, "EIP-55 checksum valid"), value


def run_checks(session: Session, app: OperatorApplication) -> tuple[list[dict], str | None]:
    notes: list[dict] = []
    email = (app.email or "").strip().lower()
    if not email:
        notes.append(_note("email", HARD_FAIL, "no email address was given"))
    elif not email_is_valid(email):
        notes.append(_note("email", HARD_FAIL, f"email address {email!r} is not valid"))
    else:
        notes.append(_note("email", OK, "email syntax valid"))

    wallet_note, wallet = check_wallet(app.wallet_address)
    notes.append(wallet_note)

    for field, label in (("full_name", "full name"), ("node_tier", "node tier"), ("region", "region")):
        if not getattr(app, field):
            notes.append(_note("required_fields", WARNING, f"no {label} was given"))

    if email:
        by_email = session.scalar(select(Operator).where(func.lower(Operator.email) == email))
        if by_email is not None:
            if wallet and by_email.wallet_address.lower() != wallet.lower():
                notes.append(_note("duplicate", HARD_FAIL,
                                   f"{email} is already operator #{by_email.id} with another wallet"))
            else:
                notes.append(_note("duplicate", WARNING,
                                   f"existing operator #{by_email.id}: approving adds a node to it"))
    if wallet:
        by_wallet = session.scalar(
            select(Operator).where(func.lower(Operator.wallet_address) == wallet.lower(),
                                   func.lower(Operator.email) != email)
        )
        if by_wallet is not None:
            notes.append(_note("duplicate", HARD_FAIL,
                               f"wallet {wallet} already belongs to operator #{by_wallet.id} "
                               "under another email"))
    conditions = []
    if email:
        conditions.append(func.lower(OperatorApplication.email) == email)
    if wallet:
        conditions.append(func.lower(OperatorApplication.wallet_address) == wallet.lower())
    if conditions:
        others = session.scalars(
            select(OperatorApplication.id).where(
                OperatorApplication.id != app.id,
                OperatorApplication.status.not_in([ApplicationStatus.REJECTED]),
                or_(*conditions),
            ).order_by(OperatorApplication.id)
        ).all()
        if others:
            notes.append(_note("duplicate", WARNING,
                               "same email or wallet as application(s) " + ", ".join(f"#{i}" for i in others)))
    return notes, wallet


def screen_application(session: Session, application_id: int, actor: Actor) -> ScreeningResult:
    """Screen one received application; a second call (or a re-run) changes nothing."""
    app = get_application_for_update(session, application_id)
    if app is None:
        raise LookupError(f"application {application_id} does not exist")
    if app.status != ApplicationStatus.RECEIVED:
        return ScreeningResult(app.id, app.status, list(app.screening_notes or []), screened=False)
    notes, wallet = run_checks(session, app)
    if wallet:
        app.wallet_address = wallet
    if app.email:
        app.email = app.email.strip().lower()
    app.screening_notes = notes
    app.screened_at = utcnow()
    hard = [n["message"] for n in notes if n["level"] == HARD_FAIL]
    if hard:
        set_application_status(app, ApplicationStatus.REJECTED)
        app.decision_reason = "; ".join(hard)
        app.decided_at = utcnow()
        audit(session, actor, "application.auto_rejected", "application", app.id, reasons=hard)
    else:
        set_application_status(app, ApplicationStatus.PENDING_REVIEW)
        audit(session, actor, "application.screened", "application", app.id,
              warnings=[n["message"] for n in notes if n["level"] == WARNING])
    session.flush()
    return ScreeningResult(app.id, app.status, notes, screened=True)
