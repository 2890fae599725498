"""Admin request dependencies: the signed-in admin (`CurrentAdmin`) and the CSRF check.

`CurrentAdmin` resolves the server-side session from the cookie. Without a live session a browser
(a request that accepts text/html) is redirected to /admin/login; anything else gets 401.
`require_csrf` compares the form field `csrf_token` (or the `X-CSRF-Token` header) with the
session's token on every state-changing request and refuses a mismatch with 403.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status

from api.deps import SessionDep
from noderr_core.admin.sessions import csrf_matches, resolve_session
from noderr_core.tables import AdminSession, AdminUser

SESSION_COOKIE = "noderr_admin_session"
LOGIN_PATH = "/admin/login"
CSRF_FIELD = "csrf_token"
CSRF_REFUSED = (
    "This form's security token (CSRF) is missing or does not match your session. "
    "Nothing was changed: reload the page and submit it again."
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def safe_next_path(candidate: str | None) -> str:
    """Only same-site admin paths are valid redirect targets (no open redirect via ?next=)."""
    if candidate and candidate.startswith("/admin") and not candidate.startswith("//"):
        if "\\" not in candidate and "\n" not in candidate and "\r" not in candidate:
            return candidate
    return "/admin"


def require_admin(request: Request, session: SessionDep) -> AdminUser:
    resolved = resolve_session(session, request.cookies.get(SESSION_COOKIE))
    if resolved is None:
        if wants_html(request):
            target = request.url.path if request.method in SAFE_METHODS else "/admin"
            if request.method in SAFE_METHODS and request.url.query:
                target += "?" + request.url.query
            raise HTTPException(
                status.HTTP_303_SEE_OTHER,
                detail="sign in first",
                headers={"Location": f"{LOGIN_PATH}?next={quote(safe_next_path(target), safe='/')}"},
            )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"admin session required: sign in at {LOGIN_PATH}",
            headers={"WWW-Authenticate": 'Cookie realm="noderr-admin"'},
        )
    admin_session, admin = resolved
    request.state.admin = admin
    request.state.admin_session = admin_session
    return admin


CurrentAdmin = Annotated[AdminUser, Depends(require_admin)]


def get_admin_session(request: Request, admin: CurrentAdmin) -> AdminSession:
    return request.state.admin_session


CurrentAdminSession = Annotated[AdminSession, Depends(get_admin_session)]


async def require_csrf(request: Request, admin_session: CurrentAdminSession) -> None:
    """Refuse a state-changing request whose CSRF token does not match the session's."""
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get("x-csrf-token")
    if submitted is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it, so Form() parameters still work
            value = form.get(CSRF_FIELD)
            submitted = value if isinstance(value, str) else None
    if not csrf_matches(admin_session, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=CSRF_REFUSED)


CsrfChecked = Depends(require_csrf)
