"""Request dependencies: database session, settings, and the authenticated principals.

The single home of the principals (`CurrentNode`, `CurrentClient`, and the admin's).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import anyio.to_thread
import orjson
from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.security import NODE_KEY_PREFIX, api_key_matches, parse_api_key, sha256_hex
from noderr_core.settings import Settings
from noderr_core.tables import Node, NodeStatus
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


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def run_in_transaction(request: Request, work: Callable[..., Any], *args: Any) -> Any:
    """`work(session, *args)` in one transaction, in one threadpool call (committed on success).

    For the hot node routes: an async route calling this makes one threadpool round trip per
    request, where `SessionDep` plus a sync route make three or four.
    """
    factory = request.app.state.session_factory

    def call() -> Any:
        with factory() as session:
            try:
                out = work(session, *args)
                session.commit()
                return out
            except BaseException:
                session.rollback()
                raise

    return await anyio.to_thread.run_sync(call)
# scope="function": commit before the response is sent, so a client that follows a redirect sees
# the write, and a failed commit becomes an error response instead of being lost after the fact.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]

_bearer = HTTPBearer(auto_error=False)


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
    key_id = parse_api_key(plaintext, NODE_KEY_PREFIX)
    if key_id is None:
        raise _unauthorized("malformed node API key (expected nk_<id>_<secret>)")
    node = session.scalar(select(Node).where(Node.api_key_id == key_id))
    if node is None or not api_key_matches(plaintext, node.api_key_hash):
        raise _unauthorized("unknown or rotated node API key: download a new bundle from the portal")
    if node.status in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"node {node.id} is {node.status}: {node.status_reason or 'contact the Noderr admins'}",
        )
    return NodePrincipal(node.id, node.operator_id, str(node.status), node.tier, node.region)


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
    if principal is None:
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
    403: {"model": ErrorDetail, "description": "the node is suspended or removed"},
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
