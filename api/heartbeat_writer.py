"""Group commit for heartbeats: one writer per API process stores them in batches (api/batching.py).

Each request hands its heartbeat to the process's writer and awaits its own future; the writer
stores every heartbeat that arrived while the previous batch was being written in one transaction
(`noderr_core.telemetry.record_heartbeats`: one multi-row INSERT and one `UPDATE nodes …
RETURNING status`; a node coming back online is switched and audited once). A request is answered
200 only after its batch committed. When a batch cannot be written because of one of its
heartbeats (a node row gone) or a deadlock with another process, each of its heartbeats is written
again in a transaction of its own, and only those that still fail get the error.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from api.batching import GroupCall, one_by_one_on_failure
from api.deps import transaction
from noderr_core.telemetry import HeartbeatReceipt, record_heartbeats
from noderr_protocol.work import HeartbeatIn

Beat = tuple[str, HeartbeatIn]  # (node id, body)


def heartbeat_writer(session_factory: Callable[[], Session], *, max_pending: int,
                     max_batch: int = 500) -> GroupCall[Beat, HeartbeatReceipt]:
    def write(beats: list[Beat]) -> list[HeartbeatReceipt]:
        return transaction(session_factory, record_heartbeats, beats)

    return GroupCall(one_by_one_on_failure(write, _may_be_one_heartbeats_fault), max_pending=max_pending,
                     max_batch=max_batch, what="heartbeats")


# PostgreSQL's deadlock_detected and serialization_failure: another process's batch locked the
# same nodes in between; alone, each heartbeat goes through.
_RETRY_ALONE_SQLSTATES = frozenset({"40P01", "40001"})


def _may_be_one_heartbeats_fault(exc: Exception) -> bool:
    if isinstance(exc, (LookupError, IntegrityError)):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "pgcode", None) in _RETRY_ALONE_SQLSTATES
