"""The webhook intake transaction: a verified Typeform delivery becomes an application, or a dead letter.

`receive_delivery` is the whole unit of work behind `POST /webhooks/typeform` once the signature
has been checked: the delivery is stored once per form_response.token in its own transaction; a
delivery that cannot be read is kept verbatim as a dead letter (in a second transaction, after the
first rolled back) and `MalformedDelivery` is raised so the adapter answers 400. Nothing a sender
posted with a valid signature is ever lost.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from noderr_core.onboarding.typeform import (
    IngestResult,
    MalformedDelivery,
    ingest_delivery,
    record_dead_letter,
)


def receive_delivery(session_factory: sessionmaker[Session], *, body: bytes, headers: dict[str, str],
                     field_map: dict[str, list[str]]) -> IngestResult:
    """Store the delivery (idempotent); on a malformed one keep a dead letter and re-raise."""
    with session_factory() as session:
        try:
            result = ingest_delivery(session, body, field_map)
            session.commit()
            return result
        except MalformedDelivery as exc:
            session.rollback()
            record_dead_letter(session, raw_body=body, headers=headers, error=str(exc))
            session.commit()
            raise
