"""One-shot flash messages carried across a POST → redirect → GET in a signed cookie.

The cookie is HMAC-signed with NODERR_SECRET_KEY so nobody can make the dashboard display text
of their choosing; it is read once by the next rendered admin page and then cleared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from fastapi import Request, Response

FLASH_COOKIE = "noderr_flash"
_MAX_MESSAGES = 5


def _key(request: Request) -> bytes:
    secret = request.app.state.settings.secret_key.get_secret_value()
    return hashlib.sha256(b"noderr-flash:" + secret.encode()).digest()


def _sign(request: Request, payload: str) -> str:
    return hmac.new(_key(request), payload.encode(), hashlib.sha256).hexdigest()


def _decode(request: Request, raw: str | None) -> list[dict]:
    if not raw or "." not in raw:
        return []
    payload, signature = raw.rsplit(".", 1)
    if not hmac.compare_digest(_sign(request, payload), signature):
        return []
    try:
        messages = json.loads(base64.urlsafe_b64decode(payload.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        return []
    return [m for m in messages if isinstance(m, dict) and "text" in m][:_MAX_MESSAGES]


def add_flash(request: Request, response: Response, text: str, level: str = "success") -> None:
    """Attach a message (level: success | error | info) for the next page the admin sees."""
    pending = list(getattr(request.state, "pending_flashes", []))
    pending.append({"level": level, "text": text[:500]})
    request.state.pending_flashes = pending[-_MAX_MESSAGES:]
    payload = base64.urlsafe_b64encode(json.dumps(request.state.pending_flashes).encode()).decode()
    response.set_cookie(
        FLASH_COOKIE,
        f"{payload}.{_sign(request, payload)}",
        max_age=300,
        path="/",
        httponly=True,
        samesite="lax",
        secure=not request.app.state.settings.is_local,
    )


def read_flashes(request: Request) -> list[dict]:
    """Messages for this page; marks them consumed so the admin router clears the cookie."""
    cached = getattr(request.state, "flashes", None)
    if cached is not None:
        return cached
    messages = _decode(request, request.cookies.get(FLASH_COOKIE))
    request.state.flashes = messages
    request.state.flashes_read = bool(messages)
    return messages
