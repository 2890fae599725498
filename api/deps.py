"""Request dependencies: database session, settings, and the authenticated principals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.db import mark_read_only
from noderr_core.tables import Node, NodeStatus
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
    403: {"model": ErrorDetail, "description": "the node is suspended or removed"},
}

# FastAPI answers 400 "There was an error parsing the body" (not 422) when a JSON body is not even
# text (invalid UTF-8); routes that take a JSON body declare it so the document stays truthful.
UNREADABLE_BODY_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorDetail, "description": "the body could not be read as JSON (not UTF-8)"},
}
