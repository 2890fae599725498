"""The email relay: claims due email rows from the outbox, renders, sends, records each attempt."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from noderr_core.email.rendering import render_email
from noderr_core.email.smtp import SmtpConfig, SmtpSendError, message_id_for, send_email
from noderr_core.tables import OutboxKind, OutboxMessage
from noderr_core.outbox import claim_due, record_failure, record_success
from noderr_core.security import unseal
from noderr_core.settings import Settings

log = logging.getLogger(__name__)

LOCK_SECONDS = 120.0


@dataclass
class RelayReport:
    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def relay_due_emails(
    session_factory: sessionmaker[Session],
    settings: Settings,
    *,
    limit: int = 50,
    now: datetime | None = None,
) -> RelayReport:
    """Send every due email (up to `limit`) once; each outcome is committed on its own."""
    report = RelayReport()
    with session_factory() as session:
        claimed = claim_due(session, kind=OutboxKind.EMAIL, limit=limit, lock_seconds=LOCK_SECONDS,
                            now=now)
        session.commit()  # publish the lease before talking to SMTP
    report.claimed = len(claimed)
    if not claimed:
        return report
    smtp = SmtpConfig.from_url(settings.smtp_url)
    backend = smtp.backend()
    try:
        for msg in claimed:
            _relay_one(session_factory, settings, backend, msg, report)
    finally:
        backend.close()
    return report


def _relay_one(session_factory, settings: Settings, backend, msg: OutboxMessage,
               report: RelayReport) -> None:
    payload = msg.payload
    try:
        context = dict(payload.get("context") or {})
        # Operator e-mails link the operator pages; rows queued before that link existed get it here.
        context.setdefault("operator_pages_url", f"{settings.public_base_url.rstrip('/')}/operator")
        if payload.get("sealed_context"):
            context.update(json.loads(unseal(payload["sealed_context"], settings.secret_key.get_secret_value())))
        rendered = render_email(payload["template"], context)
    except Exception as exc:  # a broken template or payload will not heal by retrying
        _record(session_factory, msg, report, error=f"cannot render email: {exc!r}", retryable=False)
        return
    try:
        result = send_email(
            backend,
            rendered=rendered,
            mail_from=settings.mail_from,
            to=payload["to"],
            message_id=message_id_for(msg.idempotency_key),
        )
    except SmtpSendError as exc:
        log.warning("email %s (%s) not sent: %s", msg.id, msg.idempotency_key, exc)
        _record(session_factory, msg, report, error=str(exc), retryable=exc.retryable,
                detail={"smtp_status": exc.status_code})
        return
    except Exception as exc:  # unexpected: keep the message and try again later
        log.exception("email %s: unexpected error while sending", msg.id)
        _record(session_factory, msg, report, error=f"unexpected error: {exc!r}", retryable=True)
        return
    with session_factory() as session:
        row = record_success(session, msg, result)
        if "sealed_context" in (row.payload or {}):
            # Sent: the secret (the portal link) now lives only in the recipient's inbox.
            row.payload = {k: v for k, v in row.payload.items() if k != "sealed_context"}
        session.commit()
    report.sent.append(msg.id)


def _record(session_factory, msg: OutboxMessage, report: RelayReport, *, error: str,
            retryable: bool, detail: dict[str, Any] | None = None) -> None:
    with session_factory() as session:
        row = record_failure(session, msg, error, retryable, detail=detail)
        status = row.status
        session.commit()
    report.errors[msg.id] = error
    (report.failed if status == "failed" else report.retrying).append(msg.id)
