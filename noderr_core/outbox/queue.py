"""The outbox queue: side effects (emails, chain transactions) as rows, claimed and recorded.

A producer calls `enqueue` inside the transaction that decides the side effect, so the decision and
the message commit together (or not at all). The relay (`noderr_core.outbox.relay`) then:

1. `claim_due(...)` in a short transaction and COMMITS, so the lease (status ``sending`` until
   ``locked_until``) is visible to other relays;
2. performs the side effect outside any transaction;
3. `record_success(...)` or `record_failure(...)` in a new transaction.

A relay that dies between 1 and 3 leaves the row ``sending``; once its lease expires the row is due
again. That makes delivery at-least-once, so consumers must be idempotent on the idempotency key
(the email relay sets a Message-ID derived from it; the chain relay checks on-chain state first).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from noderr_core.tables import OutboxAttempt, OutboxMessage, OutboxStatus
from noderr_core.timeutil import utcnow

# Backoff: base * 2^(attempt-1), capped, with "equal jitter" (half fixed, half random) so a burst of
# failures (SMTP down) does not retry in lock step, yet never retries sooner than half the delay.
BACKOFF_BASE_SECONDS = 15.0
BACKOFF_CAP_SECONDS = 3600.0


def backoff_seconds(attempt: int, *, base: float = BACKOFF_BASE_SECONDS,
                    cap: float = BACKOFF_CAP_SECONDS, rng: random.Random | None = None) -> float:
    """Delay before the next try after `attempt` failed attempts (attempt >= 1)."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    rnd = (rng or random).random()
    return delay / 2 + rnd * delay / 2


def enqueue(session: Session, **message: Any) -> OutboxMessage:
    """Insert the message (`message`: the keyword arguments of `outbox_row`) unless one with its
    idempotency key exists; return the stored row.

    Uses INSERT ... ON CONFLICT DO NOTHING (not check-then-insert), so concurrent producers of the
    same key end with exactly one row; a second call returns the first row unchanged.
    """
    return enqueue_row(session, outbox_row(**message))


def enqueue_row(session: Session, row: dict[str, Any]) -> OutboxMessage:
    """`enqueue` of prepared values (`outbox_row`, `noderr_core.email.email_outbox_row`)."""
    enqueue_many(session, [row])
    stored = session.scalar(
        select(OutboxMessage).where(OutboxMessage.idempotency_key == row["idempotency_key"])
    )
    assert stored is not None  # inserted above or committed by a concurrent producer
    return stored


def outbox_row(
    *,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    max_attempts: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The values of one pending message, for `enqueue_many`."""
    if not idempotency_key:
        raise ValueError("an outbox message needs a non-empty idempotency key")
    now = now or utcnow()
    return {
        "kind": str(kind),
        "idempotency_key": idempotency_key,
        "payload": payload,
        "subject_type": subject_type,
        "subject_id": None if subject_id is None else str(subject_id),
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "max_attempts": max_attempts or OutboxMessage.__table__.c.max_attempts.default.arg,
        "next_attempt_at": now,
        "created_at": now,
    }


def enqueue_many(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert many messages (`outbox_row` values) in one statement, skipping idempotency keys
    already queued; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One statement of constant shape, the rows as parameters (executemany, sent as multi-row
    # INSERTs by the driver layer): compiled once and cached, whatever the number of rows.
    table = OutboxMessage.__table__
    stmt = (insert_fn(table)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id))
    return len(session.execute(stmt, rows).all())


def claim_due(
    session: Session,
    *,
    kind: str,
    limit: int,
    lock_seconds: float,
    now: datetime | None = None,
) -> list[OutboxMessage]:
    """Lease up to `limit` due messages of `kind` (pending and due, or sending with an expired lease).

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent relays never claim the same row. SQLite: the
    engine begins every transaction with BEGIN IMMEDIATE, which serializes writers. The caller must
    commit right after this call (see the module docstring).
    """
    now = now or utcnow()
    due = or_(
        and_(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.locked_until <= now),
    )
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.kind == str(kind), due)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.status = OutboxStatus.SENDING
        row.locked_until = now + timedelta(seconds=lock_seconds)
    session.flush()
    return rows


def due_count(session: Session, *, kind: str, now: datetime | None = None) -> int:
    """How many messages of `kind` a relay would claim now (read-only; used by sensors)."""
    return len(due_ids(session, kind=kind, now=now))


def due_ids(session: Session, *, kind: str, now: datetime | None = None,
            limit: int = 1000) -> list[tuple[int, int]]:
    """(id, attempts) of due messages, oldest first (read-only; sensors key run_keys on it)."""
    now = now or utcnow()
    due = or_(
        and_(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.locked_until <= now),
    )
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.attempts)
        .where(OutboxMessage.kind == str(kind), due)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return [(r.id, r.attempts) for r in rows]


def _attach(session: Session, msg: OutboxMessage) -> OutboxMessage:
    # The relay usually claimed `msg` in an earlier (committed) session: load it in this one.
    if msg in session:
        return msg
    row = session.get(OutboxMessage, msg.id, populate_existing=True)
    if row is None:
        raise LookupError(f"outbox message {msg.id} no longer exists")
    return row


def record_success(session: Session, msg: OutboxMessage, result: dict[str, Any]) -> OutboxMessage:
    """Mark the message sent, keep the relay's result (e.g. SMTP reply, tx hash), log the attempt."""
    row = _attach(session, msg)
    now = utcnow()
    row.attempts = (row.attempts or 0) + 1
    row.status = OutboxStatus.SENT
    row.sent_at = now
    row.locked_until = None
    row.last_error = None
    row.result = result
    session.add(OutboxAttempt(outbox_id=row.id, attempted_at=now, succeeded=True, detail=result))
    session.flush()
    return row


def record_failure(
    session: Session,
    msg: OutboxMessage,
    error: str,
    retryable: bool = True,
    *,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> OutboxMessage:
    """Log the failed attempt; schedule a retry with backoff, or give up (status failed)."""
    row = _attach(session, msg)
    now = now or utcnow()
    row.attempts = (row.attempts or 0) + 1
    row.last_error = error[:4000]
    row.locked_until = None
    session.add(
        OutboxAttempt(outbox_id=row.id, attempted_at=now, succeeded=False, error=error[:4000],
                      detail=detail or {})
    )
    if not retryable or row.attempts >= row.max_attempts:
        row.status = OutboxStatus.FAILED
    else:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
    session.flush()
    return row


def retry_now(session: Session, message_id: int) -> OutboxMessage:
    """Put a failed (or waiting) message back in the queue immediately (admin action)."""
    row = session.get(OutboxMessage, message_id)
    if row is None:
        raise LookupError(f"outbox message {message_id} does not exist")
    if row.status == OutboxStatus.SENT:
        raise ValueError(f"outbox message {message_id} was already sent; it is not sent twice")
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = utcnow()
    row.max_attempts = max(row.max_attempts, row.attempts + 1)
    session.flush()
    return row
