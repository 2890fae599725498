"""Request dependencies: database session, settings, and every authenticated principal.

The single home of principals: `CurrentNode` (`Bearer nk_…`), `CurrentAdmin` (the server-side
admin session behind the cookie; a browser without one is redirected to /admin/login, anything
else gets 401) and `require_csrf` (on every state-changing admin request, the form field
`csrf_token` or the `X-CSRF-Token` header must match the session's token, else 403). The admin
routers apply `require_admin` and `require_csrf` at router level (api/routes/admin.py), never per
endpoint. (`CurrentClient` lives with the task routes until the protocol routes move here.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.admin.sessions import csrf_matches, resolve_session
from noderr_core.db import mark_read_only
from noderr_core.tables import AdminSession, AdminUser, Node, NodeStatus, Operator
from noderr_core.security import NODE_KEY_PREFIX, api_key_matches, parse_api_key
from noderr_core.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_read_db(request: Request) -> Iterator[Session]:
    """A session for public read paths: never commits, and takes no SQLite write lock."""
    with request.app.state.session_factory() as session:
        mark_read_only(session)
        try:
            yield session
        finally:
            session.rollback()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ReadSessionDep = Annotated[Session, Depends(get_read_db, scope="function")]

# Integer ids in paths are bounded to the column range (PostgreSQL INTEGER; SQLite would overflow
# past 2^63 - 1): anything outside is "no such row", answered 404 by the routers (never a 500).
MAX_DB_ID = 2**31 - 1
DbId = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
# scope="function": commit before the response is sent, so a client that follows a redirect sees
# the write, and a failed commit becomes an error response instead of being lost after the fact.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]

_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def require_node(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Node:
    """The node behind `Authorization: Bearer nk_...`; suspended and removed nodes are refused."""
    if credentials is None:
        raise _unauthorized("missing node API key: send 'Authorization: Bearer nk_…' from your .env")
    key_id = parse_api_key(credentials.credentials, NODE_KEY_PREFIX)
    if key_id is None:
        raise _unauthorized("malformed node API key (expected nk_<id>_<secret>)")
    node = session.scalar(select(Node).where(Node.api_key_id == key_id))
    if node is None or not api_key_matches(credentials.credentials, node.api_key_hash):
        raise _unauthorized("unknown or rotated node API key: download a new bundle from the portal")
    if node.status in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"node {node.id} is {node.status}: {node.status_reason or 'contact the Noderr admins'}",
        )
    return node


CurrentNode = Annotated[Node, Depends(require_node)]


class ErrorDetail(BaseModel):
    """The body of every refusal raised as HTTPException: `{"detail": "<what to do>"}`."""

    detail: str


# OpenAPI documentation of what `CurrentNode` answers when it refuses a request. A router of
# node-protocol routes declares it (`APIRouter(responses=NODE_AUTH_RESPONSES)`) so that the
# published document lists every status the route can answer (clients and the schema fuzzer in
# tests/test_api_fuzz.py rely on it).
NODE_AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"model": ErrorDetail, "description": "missing, malformed, unknown or rotated node API key"},
    403: {"model": ErrorDetail, "description": "the node is suspended or removed (or, on lease, its stake "
          "is not bonded: docs/staking.md)"},
}

# FastAPI answers 400 "There was an error parsing the body" (not 422) when a JSON body is not even
# text (invalid UTF-8); routes that take a JSON body declare it so the document stays truthful.
UNREADABLE_BODY_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorDetail, "description": "the body could not be read as JSON (not UTF-8)"},
}


# ---- admin principal and CSRF -------------------------------------------------------------------

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


# ---- operators (wallet sign-in, noderr_core.operators) ---------------------------------------
OPERATOR_SESSION_COOKIE = "noderr_operator_session"
OPERATOR_SIGN_IN_PATH = "/operator/sign-in"


def require_operator(request: Request, session: SessionDep) -> Operator:
    """The operator behind the session cookie; a browser without one goes to the sign-in page."""
    from noderr_core.operators.sessions import resolve_operator_session

    resolved = resolve_operator_session(session, request.cookies.get(OPERATOR_SESSION_COOKIE))
    if resolved is None:
        if "text/html" in request.headers.get("accept", ""):
            raise HTTPException(status.HTTP_303_SEE_OTHER, detail="sign in with your wallet first",
                                headers={"Location": OPERATOR_SIGN_IN_PATH})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail=f"operator session required: sign in at {OPERATOR_SIGN_IN_PATH}",
                            headers={"WWW-Authenticate": 'Cookie realm="noderr-operator"'})
    request.state.operator_session, request.state.operator = resolved
    return resolved[1]


CurrentOperator = Annotated[Operator, Depends(require_operator)]
