"""The one outbox relay loop: claim due rows of one kind, deliver each through its handler.

Steps, the same for every kind (see `noderr_core.outbox.queue` for the lease rules):

1. claim up to `limit` due rows of the handler's kind in a short transaction and commit, so the
   lease is visible to other relays;
2. open the handler's batch (an SMTP connection, a chain client) once for all claimed rows;
3. for each row, `handler.deliver(...)` performs the side effect outside any transaction;
4. record the outcome in a transaction of its own, together with what the handler adds to it
   (`on_success` / `on_failure`: e.g. the chain's transaction log, the node's registration time).

A handler signals a failure by raising `DeliveryFailed(error, retryable=...)`; any other exception
is unexpected and counted as retryable (the row is kept and retried with backoff). Delivery is
at-least-once, so each handler is idempotent on the row's idempotency key.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session, sessionmaker

from noderr_core.outbox.queue import claim_due, record_failure, record_success
from noderr_core.tables.outbox import OutboxKind, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]


@dataclass
class Delivered:
    """A successful delivery: `outcome` names how (e.g. "sent", "mined", "already_done").

    `result` is stored on the row; `evidence` is what the handler's `on_success` needs beyond it
    (e.g. a transaction receipt) and is not stored.
    """

    outcome: str = "sent"
    result: dict[str, Any] = field(default_factory=dict)
    evidence: Any = None


class DeliveryFailed(Exception):
    """The side effect did not happen; `retryable` says whether trying again may help."""

    def __init__(self, error: str, *, retryable: bool, detail: dict[str, Any] | None = None):
        super().__init__(error)
        self.error = error
        self.retryable = retryable
        self.detail = detail or {}


class OutboxHandler(ABC):
    """How one kind of outbox row is delivered. Subclasses set `kind` and implement `deliver`."""

    kind: ClassVar[OutboxKind]
    lock_seconds: ClassVar[float] = 120.0
    default_limit: ClassVar[int] = 50

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold what the deliveries of one relay pass share (a connection); nothing by default."""
        yield

    def describe(self, msg: OutboxMessage) -> dict[str, Any]:
        """Extra fields for the report's line about `msg`."""
        return {}

    @abstractmethod
    def deliver(self, session_factory: SessionFactory, msg: OutboxMessage) -> Delivered:
        """Perform the side effect of `msg` (outside any transaction) or raise DeliveryFailed."""

    def on_success(self, session: Session, row: OutboxMessage, delivered: Delivered) -> None:
        """Domain effects of a delivery, committed with the row's `sent` status."""

    def on_failure(self, session: Session, row: OutboxMessage, failure: DeliveryFailed) -> None:
        """Domain effects of a failed attempt, committed with the row's new status."""


@dataclass
class RelayReport:
    """What one relay pass did, for every kind alike (ids are outbox row ids)."""

    kind: str
    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # how the sent rows were delivered
    messages: list[dict[str, Any]] = field(default_factory=list)  # one line per claimed row

    def as_metadata(self) -> dict[str, int]:
        """Counts for a Dagster run's metadata (plotted over time in the UI)."""
        return {"claimed": self.claimed, "sent": len(self.sent), "retrying": len(self.retrying),
                "failed": len(self.failed)} | dict(self.outcomes)


def relay_due(
    session_factory: SessionFactory,
    handler: OutboxHandler,
    *,
    limit: int | None = None,
    now: datetime | None = None,
) -> RelayReport:
    """Deliver every due row of the handler's kind (up to `limit`) once; each outcome commits alone.

    `now` moves the claim's clock (tests of backoff); the outcome is recorded at the real time.
    """
    report = RelayReport(kind=str(handler.kind))
    with session_factory() as session:
        claimed = claim_due(session, kind=handler.kind, limit=limit or handler.default_limit,
                            lock_seconds=handler.lock_seconds, now=now)
        session.commit()  # publish the lease before performing any side effect
    report.claimed = len(claimed)
    if not claimed:
        return report
    with handler.batch():
        for msg in claimed:
            _relay_one(session_factory, handler, msg, report)
    return report


def _relay_one(session_factory: SessionFactory, handler: OutboxHandler, msg: OutboxMessage,
               report: RelayReport) -> None:
    entry = {"id": msg.id, "key": msg.idempotency_key} | handler.describe(msg)
    try:
        delivered = handler.deliver(session_factory, msg)
    except DeliveryFailed as failure:
        _record_failure(session_factory, handler, msg, failure, report, entry)
        return
    except Exception as exc:  # unexpected: keep the message and try again later
        log.exception("%s outbox %s: unexpected error while delivering", handler.kind, msg.id)
        failure = DeliveryFailed(f"unexpected error: {exc!r}", retryable=True)
        _record_failure(session_factory, handler, msg, failure, report, entry)
        return
    with session_factory() as session:
        row = record_success(session, msg, delivered.result)
        handler.on_success(session, row, delivered)
        session.commit()
    report.sent.append(msg.id)
    report.outcomes[delivered.outcome] += 1
    report.messages.append(entry | {"status": str(OutboxStatus.SENT), "outcome": delivered.outcome}
                           | delivered.result)


def _record_failure(session_factory: SessionFactory, handler: OutboxHandler, msg: OutboxMessage,
                    failure: DeliveryFailed, report: RelayReport, entry: dict[str, Any]) -> None:
    with session_factory() as session:
        row = record_failure(session, msg, failure.error, failure.retryable, detail=failure.detail)
        handler.on_failure(session, row, failure)
        status = str(row.status)
        session.commit()
    report.errors[msg.id] = failure.error
    (report.failed if status == OutboxStatus.FAILED else report.retrying).append(msg.id)
    report.messages.append(entry | {"status": status, "error": failure.error})
