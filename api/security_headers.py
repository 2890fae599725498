"""Security headers on every response (pure ASGI): no framing, no sniffing, no caching of secrets.

Rules:
- Every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and a CSP with
  `frame-ancestors 'none'` (no page of ours can be framed: clickjacking of the admin's approve and
  suspend buttons), `Referrer-Policy: same-origin` unless the route chose a stricter one (the portal
  sends `no-referrer`: its URL is a capability).
- HTML pages get a CSP that allows only scripts served by this origin (`script-src 'self'`, never
  inline: the admin and portal pages have none, charts are inline SVG; the operator pages load
  `/operator/static/operator.js` for wallet sign-in and claims), and fetches to this origin only. Styles may be inline: the templates use a `<style>` block and
  computed `style=` attributes (bar widths), which nonces cannot cover; with scripts forbidden and
  every value autoescaped, inline CSS cannot run code. Forms may only post to this origin.
- Pages that show applicant data or secrets (`/admin…`, `/portal…`, `/operator…`) get `Cache-Control: no-store`
  unless the route set its own, so neither the browser nor a proxy keeps a copy.
- Outside local development, `Strict-Transport-Security` tells browsers to use HTTPS only.
- The local-only API docs (/docs, /redoc: Swagger UI with its inline script) are left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ASGIApp = Callable[[MutableMapping[str, Any], Callable, Callable], Awaitable[None]]

HTML_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
PRIVATE_PREFIXES = ("/admin", "/portal", "/operator")
UNMANAGED_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
HSTS = b"max-age=63072000; includeSubDomains"


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/html")
    return False


def security_headers(path: str, headers: list[tuple[bytes, bytes]], *, https_only: bool) -> list:
    """The response's headers with the security headers added (route-set values are kept)."""
    present = {name.lower() for name, _ in headers}
    added: list[tuple[bytes, bytes]] = []

    def default(name: bytes, value: bytes) -> None:
        if name not in present:
            added.append((name, value))

    default(b"x-content-type-options", b"nosniff")
    default(b"x-frame-options", b"DENY")
    default(b"referrer-policy", b"same-origin")
    default(b"content-security-policy", (HTML_CSP if _is_html(headers) else API_CSP).encode())
    if path.startswith(PRIVATE_PREFIXES):
        default(b"cache-control", b"no-store")
    if https_only:
        default(b"strict-transport-security", HSTS)
    return list(headers) + added


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, https_only: bool = False):
        self.app = app
        self.https_only = https_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNMANAGED_PATHS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = security_headers(
                    path, list(message.get("headers", [])), https_only=self.https_only
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)
