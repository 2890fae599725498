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
from noderr_core.outbox import enqueue
from noderr_core.security import seal

__all__ = ["enqueue_email", "render_email", "RenderedEmail", "UnknownEmailTemplate"]


class UnknownEmailTemplate(ValueError):
    pass


def enqueue_email(
    session: Session,
    *,
    template: str,
    to: str,
    context: dict[str, Any],
    idempotency_key: str,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    secret_context: dict[str, str] | None = None,
    secret_key: str | None = None,
) -> OutboxMessage:
    """Queue one email; a second call with the same idempotency key returns the first row."""
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
    return enqueue(
        session,
        kind=OutboxKind.EMAIL,
        idempotency_key=idempotency_key,
        payload=payload,
        subject_type=subject_type,
        subject_id=subject_id,
    )
