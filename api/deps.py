"""Request dependencies: database session, settings, and the authenticated principals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.tables import Node, NodeStatus, Operator
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


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
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
