"""Refuses NUL characters (U+0000) in request paths, query strings and JSON/form bodies with a 422.

PostgreSQL cannot store NUL in a text value: psycopg2 raises ValueError ("A string literal cannot
contain NUL (0x00) characters") on the first query that carries one, so a single `%00` in a path
parameter, a query parameter, a form field or a JSON string (`"\\u0000"`) turned dozens of routes
into 500s on PostgreSQL (SQLite stores it silently). No legitimate input of this API contains NUL,
so it is refused once, here, before any route runs, with the body FastAPI uses for validation
errors (`{"detail": [{"loc", "msg", "type"}]}`: the documented HTTPValidationError schema).

Pure ASGI: bodies are scanned chunk by chunk as the app reads them, never buffered, so the routes'
own size limits (e.g. the task submission's 413) still apply as the bytes arrive. Paths under
EXEMPT_BODY_PREFIXES are not body-scanned: the Typeform webhook must verify the signature of the
exact bytes and keep a delivery it cannot store as a dead letter (noderr_core.onboarding.typeform).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, MutableMapping
from typing import Any

from api.refusable_body import ASGIApp, run_with_refusable_body

EXEMPT_BODY_PREFIXES = ("/webhooks/",)
MESSAGE = ("NUL characters (\\u0000, %00) are not accepted in any text field: remove them and "
           "send the request again")
# A JSON "\u0000" escape: the backslash must not itself be escaped (an odd run of backslashes).
_JSON_NUL = re.compile(rb"(\\+)u0000")
_FORM_NUL = re.compile(rb"%00")
_TAIL = 64  # bytes of the previous chunk kept so a pattern split across chunks is still seen


def _json_has_nul(data: bytes) -> bool:
    return b"\x00" in data or any(len(m.group(1)) % 2 == 1 for m in _JSON_NUL.finditer(data))


def _form_has_nul(data: bytes) -> bool:
    return b"\x00" in data or _FORM_NUL.search(data) is not None


def _body_scanner(scope: MutableMapping[str, Any]) -> Callable[[bytes], bool] | None:
    if scope.get("path", "").startswith(EXEMPT_BODY_PREFIXES):
        return None
    content_type = b""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
    if content_type == b"application/json" or content_type.endswith(b"+json"):
        return _json_has_nul
    if content_type == b"application/x-www-form-urlencoded":
        return _form_has_nul
    if content_type == b"multipart/form-data":  # values are not percent-encoded there
        return lambda data: b"\x00" in data
    return None


def _refusal(location: str) -> bytes:
    return json.dumps(
        {"detail": [{"type": "string_contains_nul", "loc": [location], "msg": MESSAGE}]}
    ).encode()


class RefuseNulMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", ""):
            await self._refuse(send, "path")
            return
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            await self._refuse(send, "query")
            return
        scanner = _body_scanner(scope)
        if scanner is None:
            await self.app(scope, receive, send)
            return

        tail = b""

        def has_nul(chunk: bytes) -> bool:
            nonlocal tail
            if scanner(tail + chunk):
                return True
            tail = (tail + chunk)[-_TAIL:]  # a pattern split across chunks is still seen
            return False

        await run_with_refusable_body(self.app, scope, receive, send, should_refuse=has_nul,
                                      refuse=lambda send_: self._refuse(send_, "body"))

    @staticmethod
    async def _refuse(send, location: str) -> None:
        body = _refusal(location)
        await send({
            "type": "http.response.start",
            "status": 422,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
