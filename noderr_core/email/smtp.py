"""Sending one rendered email over SMTP with the `emails` package, checking the server's answer.

`emails` does not raise on failure (fail_silently): it returns a response whose status code must be
checked. We turn every outcome into either a result dict (accepted, 250) or `SmtpSendError`, whose
`retryable` says whether a later attempt can succeed (connection failures and 4xx replies) or not
(5xx replies such as an unknown mailbox).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import emails
from emails.backend.smtp import SMTPBackend

from noderr_core.email.rendering import RenderedEmail


class SmtpSendError(Exception):
    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    ssl: bool = False
    tls: bool = False
    user: str | None = None
    password: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> "SmtpConfig":
        """smtp://[user:pass@]host[:port] (plain), smtps:// (TLS on connect), smtp+starttls://."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError(
                f"NODERR_SMTP_URL must start with smtp://, smtps:// or smtp+starttls:// (got {url!r})"
            )
        default_port = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}[scheme]
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or default_port,
            ssl=scheme == "smtps",
            tls=scheme == "smtp+starttls",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def backend(self) -> SMTPBackend:
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "timeout": self.timeout,
                                  "ssl": self.ssl, "tls": self.tls}
        if self.user:
            kwargs["user"] = self.user
            kwargs["password"] = self.password or ""
        return SMTPBackend(**kwargs)


def message_id_for(idempotency_key: str, domain: str = "noderr.local") -> str:
    # Stable per idempotency key: if a relay crashes after the server accepted the message and
    # sends it again, receivers (and our tests) can recognise the duplicate.
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{domain}>"


def send_email(
    backend: SMTPBackend,
    *,
    rendered: RenderedEmail,
    mail_from: str,
    to: str,
    message_id: str,
) -> dict[str, Any]:
    message = emails.html(
        html=rendered.html,
        text=rendered.text,
        subject=rendered.subject,
        mail_from=_parse_from(mail_from),
        message_id=message_id,
    )
    response = message.send(to=to, smtp=backend)
    if response is None:
        raise SmtpSendError(f"no recipient for {rendered.subject!r}", retryable=False)
    code = response.status_code
    if response.success and not response.refused_recipients:
        text = response.status_text.decode(errors="replace") if response.status_text else ""
        return {"smtp_status": code, "smtp_reply": text, "message_id": message_id, "to": to}
    if response.refused_recipients:
        refused = {k: [v[0], v[1].decode(errors="replace")] for k, v in response.refused_recipients.items()}
        permanent = all(v[0] >= 500 for v in refused.values())
        raise SmtpSendError(f"recipient refused: {refused}", retryable=not permanent, status_code=code)
    if response.error is not None and code is None:
        # Could not talk to the server at all (refused connection, timeout, TLS failure).
        backend.close()
        raise SmtpSendError(f"SMTP server unreachable: {response.error}", retryable=True)
    text = response.status_text.decode(errors="replace") if response.status_text else ""
    backend.close()
    raise SmtpSendError(
        f"SMTP server answered {code} {text} to {response.last_command}" +
        (f" ({response.error})" if response.error else ""),
        retryable=code is None or code < 500,
        status_code=code,
    )


def _parse_from(mail_from: str) -> tuple[str, str] | str:
    # "Name <addr>" → (name, addr) as `emails` expects.
    if "<" in mail_from and mail_from.endswith(">"):
        name, addr = mail_from[:-1].split("<", 1)
        return (name.strip().strip('"'), addr.strip())
    return mail_from
