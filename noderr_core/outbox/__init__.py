"""The outbox domain: every side effect (an email, a chain transaction) is a row first.

  queue    enqueue (idempotent), claim_due (leases), record_success / record_failure (backoff),
           due_ids (read-only, for sensors), retry_now (admin action)
  relay    the one relay loop: claims due rows of one kind and hands each to that kind's handler
           (`EmailHandler` in noderr_core.email.relay, `ChainHandler` in noderr_core.chain.relay),
           recording every outcome in its own transaction; one `RelayReport` for every kind

Producers import `enqueue` from here; each kind's sending code stays in its own domain module.
"""

from noderr_core.outbox.queue import (
    backoff_seconds,
    claim_due,
    due_count,
    due_ids,
    enqueue,
    enqueue_many,
    enqueue_row,
    outbox_row,
    record_failure,
    record_success,
    retry_now,
)
from noderr_core.outbox.relay import DeliveryFailed, Delivered, OutboxHandler, RelayReport, relay_due
from noderr_core.tables.outbox import OutboxKind

__all__ = [
    "Delivered", "DeliveryFailed", "OutboxHandler", "OutboxKind", "RelayReport", "backoff_seconds",
    "claim_due", "due_count", "due_ids", "enqueue", "enqueue_many", "enqueue_row", "outbox_row",
    "record_failure",
    "record_success", "relay_due",
    "retry_now",
]
