"""The email handler of the outbox relay: renders each due email row and sends it over SMTP.

Run it with `relay_due(session_factory, EmailHandler(settings))`. A template or payload that
cannot render fails for good (retrying will not heal it); SMTP errors are retried as the SMTP reply
says. Each message carries a Message-ID derived from its idempotency key, so a re-send after a lost
acknowledgement is recognisable as the same message. Once sent, the sealed part of the payload (the
portal link) is dropped: the secret then lives only in the recipient's inbox.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from noderr_core.email.rendering import render_email
from noderr_core.email.smtp import SmtpConfig, SmtpSendError, message_id_for, send_email
from noderr_core.outbox.relay import Delivered, DeliveryFailed, OutboxHandler, SessionFactory
from noderr_core.security import unseal
from noderr_core.settings import Settings
from noderr_core.tables import OutboxKind, OutboxMessage

log = logging.getLogger(__name__)


class EmailHandler(OutboxHandler):
    kind = OutboxKind.EMAIL
    lock_seconds = 120.0
    default_limit = 50

    def __init__(self, settings: Settings):
        self.settings = settings
        self._backend = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        # One SMTP connection for the whole pass.
        self._backend = SmtpConfig.from_url(self.settings.smtp_url).backend()
        try:
            yield
        finally:
            self._backend.close()
            self._backend = None

    def deliver(self, session_factory: SessionFactory, msg: OutboxMessage) -> Delivered:
        payload = msg.payload
        try:
            context = dict(payload.get("context") or {})
            # Operator e-mails link the operator pages; rows queued before that link existed get it here.
            context.setdefault("operator_pages_url",
                               f"{self.settings.public_base_url.rstrip('/')}/operator")
            if payload.get("sealed_context"):
                secret = self.settings.secret_key.get_secret_value()
                context.update(json.loads(unseal(payload["sealed_context"], secret)))
            rendered = render_email(payload["template"], context)
        except Exception as exc:  # a broken template or payload will not heal by retrying
            raise DeliveryFailed(f"cannot render email: {exc!r}", retryable=False) from exc
        try:
            result = send_email(
                self._backend,
                rendered=rendered,
                mail_from=self.settings.mail_from,
                to=payload["to"],
                message_id=message_id_for(msg.idempotency_key),
            )
        except SmtpSendError as exc:
            log.warning("email %s (%s) not sent: %s", msg.id, msg.idempotency_key, exc)
            raise DeliveryFailed(str(exc), retryable=exc.retryable,
                                 detail={"smtp_status": exc.status_code}) from exc
        return Delivered("sent", result)

    def on_success(self, session: Session, row: OutboxMessage, delivered: Delivered) -> None:
        if "sealed_context" in (row.payload or {}):
            row.payload = {k: v for k, v in row.payload.items() if k != "sealed_context"}
