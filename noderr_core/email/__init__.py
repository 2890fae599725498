"""Emails: rendered from Jinja2 templates, queued in the outbox, sent over SMTP by `relay.EmailHandler`.

`enqueue_email` is the only way the platform sends mail: it writes an outbox row (kind ``email``)
in the caller's transaction. Templates live in ``templates/<name>.{subject,html,txt}.j2``; other
areas add their own there.

Secrets in an email (the portal link carries a download token) are never stored in the clear: pass
them as ``secret_context``; they are sealed with NODERR_SECRET_KEY, unsealed only by the relay at
send time, and wiped from the row once the message is sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from noderr_core.email.rendering import RenderedEmail, render_email, render_subject, template_exists
from noderr_core.tables import OutboxKind, OutboxMessage
from noderr_core.outbox import enqueue_row, outbox_row
from noderr_core.security import seal

__all__ = ["enqueue_email", "email_outbox_row", "render_email", "RenderedEmail", "UnknownEmailTemplate"]


class UnknownEmailTemplate(ValueError):
    pass


def enqueue_email(session: Session, **message: Any) -> OutboxMessage:
    """Queue one email (`message`: the keyword arguments of `email_outbox_row`); a second call with
    the same idempotency key returns the first row."""
    return enqueue_row(session, email_outbox_row(**message))


def email_outbox_row(
    *,
    template: str,
    to: str,
    context: dict[str, Any],
    idempotency_key: str,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    secret_context: dict[str, str] | None = None,
    secret_key: str | None = None,
) -> dict[str, Any]:
    """One email as outbox values; many of them go in one statement through
    `noderr_core.outbox.enqueue_many`."""
    return outbox_row(kind=OutboxKind.EMAIL, idempotency_key=idempotency_key,
                      payload=_email_payload(template, to, context, secret_context, secret_key),
                      subject_type=subject_type, subject_id=subject_id)


def _email_payload(template: str, to: str, context: dict[str, Any],
                   secret_context: dict[str, str] | None, secret_key: str | None) -> dict[str, Any]:
    if not template_exists(template):
        raise UnknownEmailTemplate(
            f"no email template {template!r}: add noderr_core/email/templates/{template}"
            ".subject.j2, .html.j2 and .txt.j2"
        )
    if not to or "@" not in to:
        raise ValueError(f"cannot queue email {template!r}: recipient {to!r} is not an address")
    payload: dict[str, Any] = {
        "template": template,
        "to": to,
        # Rendered now so the dashboard can show what is queued (subjects never hold secrets).
        "subject": render_subject(template, context),
        "context": context,
    }
    if secret_context:
        if not secret_key:
            raise ValueError("secret_context needs secret_key (NODERR_SECRET_KEY) to seal it")
        import json

        payload["sealed_context"] = seal(json.dumps(secret_context), secret_key)
    return payload
