"""Request dependencies: database session, settings, and every authenticated principal.

The single home of principals: `CurrentNode` (`Bearer nk_…`, authenticated from the header before
the body is read and cached per key for a few seconds), `CurrentClient` (`Bearer ck_…`),
`CurrentAdmin` (the server-side admin session behind the cookie; a browser without one is
redirected to /admin/login, anything else gets 401), `require_csrf` (on every state-changing admin
request, the form field `csrf_token` or the `X-CSRF-Token` header must match the session's token,
else 403; applied at router level in api/routes/admin.py, never per endpoint) and `CurrentOperator`
(the wallet sign-in session of the operator pages).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import anyio.to_thread
import orjson
from fastapi import Depends, HTTPException, Path, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.batching import BatcherFull, GroupCall
from noderr_core.admin.sessions import csrf_matches, resolve_session
from noderr_core.db import mark_read_only
from noderr_core.security import NODE_KEY_PREFIX, api_key_matches, parse_api_key, sha256_hex
from noderr_core.settings import Settings
from noderr_core.tables import AdminSession, AdminUser, Node, NodeStatus, Operator
from noderr_core.tasks.clients import authenticate_client


async def get_settings_dep(request: Request) -> Settings:
    # async: a plain read; a sync dependency would cost a threadpool round trip per request.
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




async def run_in_transaction(request: Request, work: Callable[..., Any], *args: Any) -> Any:
    """`work(session, *args)` in one transaction, in one threadpool call (committed on success).

    For the hot node routes: an async route calling this makes one threadpool round trip per
    request, where `SessionDep` plus a sync route make three or four.
    """
    # At most `api_max_task_transactions` at once: the others wait here, holding no thread and no
    # connection (more concurrent transactions only contend for the same rows and cores).
    async with request.app.state.task_transactions:
        return await anyio.to_thread.run_sync(transaction, request.app.state.session_factory, work, *args)


def transaction(session_factory: Callable[[], Session], work: Callable[..., Any], *args: Any) -> Any:
    """`work(session, *args)` in one transaction: committed when it returns, rolled back if it raises."""
    with session_factory() as session:
        try:
            out = work(session, *args)
            session.commit()
            return out
        except BaseException:
            session.rollback()
            raise


# scope="function": commit before the response is sent, so a client that follows a redirect sees
# the write, and a failed commit becomes an error response instead of being lost after the fact.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]

_bearer = HTTPBearer(auto_error=False)


def shed_exception(settings: Settings, why: str) -> HTTPException:
    """503 + Retry-After, as admission control sheds (api/admission.py): nodes back off with jitter."""
    retry = settings.api_retry_after_seconds
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail=f"the control plane is at capacity ({why}): retry after {retry}s, with jitter",
        headers={"Retry-After": str(retry), "Cache-Control": "no-store"},
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


# ---- principals: the single home of CurrentNode and CurrentClient ------------------------------
#
# Authentication happens from the `Authorization` header *before the body is read* (see
# `PrincipalRoute`): an unauthenticated stranger never makes the API buffer or parse a body. A
# successful authentication is cached per key for `auth_cache_seconds` (`PrincipalCache`), so the
# hot node routes (heartbeat, lease, results) do not query the key on every call; suspension,
# removal, key rotation and revocation take effect within that time.


@dataclass(frozen=True)
class NodePrincipal:
    """The authenticated node, as the request handlers need it (a snapshot, not an ORM row)."""

    id: str
    operator_id: int
    status: str
    tier: str | None
    region: str | None


@dataclass(frozen=True)
class ClientPrincipal:
    """The authenticated task-API client."""

    id: int
    name: str


class PrincipalCache:
    """Authenticated principals by the sha256 of the presented key, for `ttl` seconds.

    Per worker process (kept on app.state). Only successes are cached: a refused key is looked up
    again, so a key that becomes valid works at once. Bounded: when full, expired entries are
    dropped and, if that is not enough, everything (a cache miss only costs one indexed query).
    """

    def __init__(self, ttl: float, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key_digest: str) -> Any | None:
        hit = self._entries.get(key_digest)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            self._entries.pop(key_digest, None)
            return None
        return hit[1]

    def put(self, key_digest: str, principal: Any) -> None:
        if self.ttl <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key_digest] = (now + self.ttl, principal)


def principal_cache(app_state) -> PrincipalCache:
    cache = getattr(app_state, "principal_cache", None)
    if cache is None:
        cache = app_state.principal_cache = PrincipalCache(app_state.settings.auth_cache_seconds)
    return cache


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def lookup_node(session: Session, plaintext: str) -> NodePrincipal:
    """The node behind `nk_...` (one indexed query); raises 401/403 as the routes answer them."""
    [found] = lookup_nodes(session, [plaintext])
    if isinstance(found, HTTPException):
        raise found
    return found


_NODE_KEY_COLUMNS = (Node.id, Node.operator_id, Node.status, Node.status_reason, Node.tier, Node.region,
                     Node.api_key_id, Node.api_key_hash)


def lookup_nodes(session: Session, plaintexts: list[str]) -> list[NodePrincipal | HTTPException]:
    """The node behind each `nk_...` key, or the 401/403 to answer for it, in one indexed query."""
    key_ids = [parse_api_key(plaintext, NODE_KEY_PREFIX) for plaintext in plaintexts]
    wanted = sorted({key_id for key_id in key_ids if key_id is not None})
    rows = {}
    if wanted:
        rows = {row.api_key_id: row for row in session.execute(
            select(*_NODE_KEY_COLUMNS).where(Node.api_key_id.in_(wanted)))}
    out: list[NodePrincipal | HTTPException] = []
    for plaintext, key_id in zip(plaintexts, key_ids, strict=True):
        node = rows.get(key_id) if key_id is not None else None
        if key_id is None:
            out.append(_unauthorized("malformed node API key (expected nk_<id>_<secret>)"))
        elif node is None or not api_key_matches(plaintext, node.api_key_hash):
            out.append(_unauthorized("unknown or rotated node API key: download a new bundle from the portal"))
        elif node.status in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
            out.append(HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"node {node.id} is {node.status}: {node.status_reason or 'contact the Noderr admins'}",
            ))
        else:
            out.append(NodePrincipal(node.id, node.operator_id, str(node.status), node.tier, node.region))
    return out


def node_key_lookups(session_factory: Callable[[], Session], *, max_pending: int,
                     max_batch: int = 500) -> GroupCall[str, NodePrincipal | HTTPException]:
    """The process's batcher of node-key lookups (api/batching.py): on a heartbeat every 30 s the
    principal cache has usually expired, so every heartbeat looks its key up; batched, the
    lookups of one moment share one threadpool call, one session and one query."""

    def lookup(plaintexts: list[str]) -> list[NodePrincipal | HTTPException]:
        with session_factory() as session:
            try:
                return lookup_nodes(session, plaintexts)
            finally:
                session.rollback()

    return GroupCall(lookup, max_pending=max_pending, max_batch=max_batch, what="node key lookups")


def lookup_client(session: Session, plaintext: str) -> ClientPrincipal:
    client = authenticate_client(session, plaintext)
    if client is None:
        raise _unauthorized("unknown, revoked or malformed client API key (expected ck_<id>_<secret>)")
    return ClientPrincipal(client.id, client.name)


_MISSING_KEY = {
    "node": "missing node API key: send 'Authorization: Bearer nk_…' from your .env",
    "client": "missing client API key: send 'Authorization: Bearer ck_…'",
}
_LOOKUPS = {"node": lookup_node, "client": lookup_client}


async def authenticate(request: Request, kind: str) -> NodePrincipal | ClientPrincipal:
    """The principal of `kind` ('node' | 'client') behind the request's bearer key.

    Cached per key; on a miss the lookup runs in the threadpool with its own short session (it
    commits a client key's `last_used_at` touch), finished before the route's own session opens.
    """
    state = request.scope.setdefault("state", {})
    if kind in state:
        return state[kind]
    token = _bearer_token(request)
    if token is None:
        raise _unauthorized(_MISSING_KEY[kind])
    cache = principal_cache(request.app.state)
    digest = kind + ":" + sha256_hex(token)
    principal = cache.get(digest)
    if principal is None and kind == "node":
        try:
            principal = await request.app.state.node_key_lookups.submit(token)
        except BatcherFull as full:
            raise shed_exception(request.app.state.settings, str(full)) from None
        if isinstance(principal, HTTPException):
            raise principal
        cache.put(digest, principal)
    elif principal is None:
        factory = request.app.state.session_factory

        def lookup():
            with factory() as session:
                found = _LOOKUPS[kind](session, token)
                session.commit()
                return found

        principal = await anyio.to_thread.run_sync(lookup)
        cache.put(digest, principal)
    state[kind] = principal
    return principal


# A run of 19+ digits may be an integer outside 64 bits, which orjson reads differently from the
# standard library (a float); such bodies are parsed with `json`, so every body means what it did.
_LONG_DIGITS = re.compile(rb"\d{19,}")


class OrjsonRequest(Request):
    """A request whose JSON body is parsed with orjson (several times faster than `json` on the
    large lease/result batches), with exactly the standard library's meaning: bytes that are not
    UTF-8 still raise UnicodeDecodeError (FastAPI answers 400); anything orjson refuses (e.g. a
    lone surrogate escape) or could read differently (huge integers) goes through `json`, whose
    JSONDecodeError FastAPI answers 422 `json_invalid`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):  # Starlette's own cache attribute, as in Request.json()
            raw = await self.body()
            text = raw.decode("utf-8")
            if _LONG_DIGITS.search(raw):
                self._json = json.loads(text)
            else:
                try:
                    self._json = orjson.loads(text)
                except orjson.JSONDecodeError:
                    self._json = json.loads(text)
        return self._json


class PrincipalRoute(APIRoute):
    """Authenticates the route's principal from the headers before FastAPI reads the body.

    Subclasses set `principal_kind`; routers use them as `route_class`. The dependency
    (`CurrentNode` / `CurrentClient`) then only picks the principal up from the request state.
    """

    principal_kind: ClassVar[str] = "node"
    request_class: ClassVar[type[Request]] = OrjsonRequest  # how the body is read and parsed

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        kind, request_class = self.principal_kind, self.request_class

        async def authenticated_handler(request: Request) -> Response:
            await authenticate(request, kind)
            return await handler(request_class(request.scope, request.receive))

        return authenticated_handler


class NodeRoute(PrincipalRoute):
    principal_kind = "node"


class ClientRoute(PrincipalRoute):
    principal_kind = "client"


async def require_node(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> NodePrincipal:
    """The node behind `Authorization: Bearer nk_...`; suspended and removed nodes are refused.

    (`_credentials` only publishes the bearer scheme in OpenAPI; the key is read by `authenticate`.)
    """
    return await authenticate(request, "node")


async def require_client(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ClientPrincipal:
    """The client behind `Authorization: Bearer ck_…`; unknown, revoked or disabled keys get 401."""
    return await authenticate(request, "client")


CurrentNode = Annotated[NodePrincipal, Depends(require_node)]
CurrentClient = Annotated[ClientPrincipal, Depends(require_client)]


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

# What `CurrentClient` answers when it refuses a request (the client-side counterpart of
# NODE_AUTH_RESPONSES). There is no 403: a disabled client's keys are simply not valid.
CLIENT_AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"model": ErrorDetail,
          "description": "missing, malformed, unknown or revoked client API key, or a disabled client"},
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
