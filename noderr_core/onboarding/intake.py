"""The webhook intake transaction: a verified Typeform delivery becomes an application, or a dead letter.

`receive_delivery` is the whole unit of work behind `POST /webhooks/typeform` once the signature
has been checked: the delivery is stored once per form_response.token in its own transaction. A
signed delivery that cannot be stored is kept verbatim as a dead letter (in a second transaction,
after the first rolled back) with the reason, and an error is raised so the adapter answers 4xx:
`MalformedDelivery` (400) for a body that is not a Typeform delivery, `UningestableDelivery` (422)
for anything else (deep nesting, huge numbers, lone surrogates, ...). Nothing a sender posted with a
valid signature is ever lost, and no signed delivery answers 500 (Typeform would retry it forever).
Only a database that is down or busy is re-raised: then the delivery should be retried (5xx).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from noderr_core.onboarding.typeform import (
    IngestResult,
    MalformedDelivery,
    ingest_delivery,
    record_dead_letter,
)

log = logging.getLogger(__name__)

REASON_LIMIT = 2000


class UningestableDelivery(Exception):
    """A signed delivery that could not be ingested; it was kept as a dead letter with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def storable_reason(text: str, limit: int = REASON_LIMIT) -> str:
    """A reason may quote the delivery: no NUL or lone surrogate may reach the database."""
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return clean[:limit]


def _keep(session: Session, body: bytes, headers: dict[str, str], reason: str) -> str:
    reason = storable_reason(reason)
    record_dead_letter(session, raw_body=body, headers=headers, error=reason)
    session.commit()
    return reason


def receive_delivery(session_factory: sessionmaker[Session], *, body: bytes, headers: dict[str, str],
                     field_map: dict[str, list[str]]) -> IngestResult:
    """Store the delivery (idempotent); on one that cannot be stored keep a dead letter and raise."""
    with session_factory() as session:
        try:
            result = ingest_delivery(session, body, field_map)
            session.commit()
            return result
        except MalformedDelivery as exc:
            session.rollback()
            reason = _keep(session, body, headers, f"malformed Typeform delivery: {exc}")
            raise MalformedDelivery(reason) from exc
        except (OperationalError, InterfaceError):
            session.rollback()  # the database, not the delivery: let Typeform retry (5xx)
            raise
        except Exception as exc:  # a signed delivery we could not ingest: kept, never a 500
            session.rollback()
            log.exception("signed Typeform delivery could not be ingested; kept as a dead letter")
            reason = _keep(session, body, headers,
                           f"the delivery could not be ingested ({type(exc).__name__}: {exc})")
            raise UningestableDelivery(reason) from exc
