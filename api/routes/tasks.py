"""Task API: clients submit and read tasks (`Bearer ck_…`); nodes lease, extend, release and
report results (`Bearer nk_…`). Thin adapters over noderr_core.tasks.

Every status a route can answer is declared in its `responses` (the published /openapi.json is
what clients and the schema fuzzer in tests/test_api_fuzz.py check the answers against).
"""

from __future__ import annotations

import re
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, WithJsonSchema

from api.deps import (
    CLIENT_AUTH_RESPONSES,
    NODE_AUTH_RESPONSES,
    UNREADABLE_BODY_RESPONSES,
    ClientRoute,
    CurrentClient,
    CurrentNode,
    ErrorDetail,
    NodeRoute,
    OrjsonRequest,
    SessionDep,
    SettingsDep,
    run_in_transaction,
)
from noderr_core.staking import stake_allows_leasing, stake_refusal_detail
from noderr_core.tasks import (
    TaskBatchTooLarge,
    TaskSubmissionError,
    extend_leases,
    get_tasks,
    lease_tasks,
    release_tasks,
    submit_results,
    submit_tasks,
)
from noderr_core.tasks.rules import MAX_SUBMIT_BODY_BYTES, MAX_TASK_IDS_PER_READ, MAX_TASKS_PER_SUBMIT
from noderr_protocol.tasks import SubmitTasksRequest, SubmitTasksResponse, TaskBatchPublic, TaskPublic
from noderr_protocol.work import (
    LeaseExtendRequest,
    LeaseExtendResponse,
    LeaseRequest,
    LeaseResponse,
    ReleaseRequest,
    ReleaseResponse,
    ResultBatch,
    ResultBatchAck,
)

# ---- node protocol ------------------------------------------------------------------------------

node_router = APIRouter(
    prefix="/v1/tasks", tags=["node protocol"],
    responses={**NODE_AUTH_RESPONSES, **UNREADABLE_BODY_RESPONSES},
    route_class=NodeRoute,  # the node is authenticated before its body is read
)


# The node routes are async and run their one transaction in a single threadpool call
# (`run_in_transaction`): they are the hot path, and each sync dependency would cost a round trip.


@node_router.post("/lease", response_model=LeaseResponse)
async def post_lease(body: LeaseRequest, node: CurrentNode, request: Request,
                     settings: SettingsDep) -> Response:
    def lease(session):
        # The bonding gate (docs/staking.md): one primary-key read of node_stakes, never an RPC.
        if settings.stake_gate_enabled and not stake_allows_leasing(session, node.id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=stake_refusal_detail(session, node.id))
        return lease_tasks(
            session,
            node_id=node.id,
            operator_id=node.operator_id,
            model_names=[m.name for m in body.models],
            max_tasks=body.max_tasks,
            lease_seconds=body.lease_seconds,
        )

    outcome = await run_in_transaction(request, lease)
    # Built here rather than through LeaseResponse: each task's inputs go out as the JSON text
    # stored at submission (validated then), never parsed and re-validated per lease. The shape is
    # LeaseResponse's (the route's published schema; tests/test_api_fuzz.py checks answers by it).
    return _protocol_json({
        "tasks": [
            {"task_id": g.task_id, "model_name": g.model_name, "inputs": orjson.Fragment(g.inputs_json),
             "lease_expires_at": g.lease_expires_at}
            for g in outcome.grants
        ],
        "lease_expires_at": outcome.lease_expires_at,
        "retry_after_seconds": 1.0 if outcome.notice is None else 60.0,
        "notice": outcome.notice,
    })


def _protocol_json(payload: dict) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_UTC_Z), media_type="application/json")


@node_router.post("/lease/extend", response_model=LeaseExtendResponse)
async def post_lease_extend(body: LeaseExtendRequest, node: CurrentNode, request: Request) -> LeaseExtendResponse:
    outcome = await run_in_transaction(
        request,
        lambda session: extend_leases(
            session, node_id=node.id, task_ids=body.task_ids, lease_seconds=body.lease_seconds),
    )
    return LeaseExtendResponse(
        extended=outcome.extended, refused=outcome.refused, lease_expires_at=outcome.lease_expires_at
    )


@node_router.post("/results", response_model=ResultBatchAck)
async def post_results(body: ResultBatch, node: CurrentNode, request: Request) -> Response:
    acks = await run_in_transaction(
        request, lambda session: submit_results(session, node_id=node.id, results=body.results))
    # ResultBatchAck's shape, serialized directly (64 acks per call on the hot path).
    return _protocol_json({"acks": [{"task_id": a.task_id, "status": a.status, "reason": a.reason} for a in acks]})


@node_router.post("/release", response_model=ReleaseResponse)
async def post_release(body: ReleaseRequest, node: CurrentNode, request: Request) -> ReleaseResponse:
    outcome = await run_in_transaction(
        request, lambda session: release_tasks(session, node_id=node.id, task_ids=body.task_ids))
    return ReleaseResponse(released=outcome.released, refused=outcome.refused)


# ---- client API ---------------------------------------------------------------------------------


async def _read_limited_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_SUBMIT_BODY_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"request body is {int(declared)} bytes; the limit is {MAX_SUBMIT_BODY_BYTES} bytes: "
            "split the batch",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SUBMIT_BODY_BYTES:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"request body exceeds {MAX_SUBMIT_BODY_BYTES} bytes: split the batch",
            )
        chunks.append(chunk)
    return b"".join(chunks)


class _SizeLimitedRequest(OrjsonRequest):
    """A request whose body is read with the submission limit (a 413 as soon as it is exceeded)."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):  # Starlette's own cache attribute, as in Request.body()
            self._body = await _read_limited_body(self)
        return self._body


class _SizeLimitedBodyRoute(ClientRoute):
    """Authenticates the client, then reads the body through `_SizeLimitedRequest`.

    Why not a hand-parsed body: the request schema would then have to be pasted into
    `openapi_extra`, and its `#/$defs/…` references pointed nowhere inside /openapi.json (FastAPI
    only publishes component schemas for models that routes declare). Declaring `body:
    SubmitTasksRequest` lets FastAPI publish the schema and its components itself, parse the JSON
    and answer the standard 422; this route class keeps what hand parsing would be for: the caller
    is authenticated from its headers first, then the body is read with the 16 MiB limit *before*
    anything parses it, so an oversized batch is a 413 with a clear message. (FastAPI's own
    `max_body_size=` would also limit it, but it answers a plain-text "Content Too Large" when
    Content-Length announces too much — not the documented JSON body.)
    """

    request_class = _SizeLimitedRequest


client_router = APIRouter(
    prefix="/v1/tasks", tags=["tasks"], responses=CLIENT_AUTH_RESPONSES,
    route_class=_SizeLimitedBodyRoute,  # only routes with a body read one: here POST /v1/tasks
)


@client_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubmitTasksResponse,
    responses={
        **UNREADABLE_BODY_RESPONSES,
        413: {"model": ErrorDetail,
              "description": f"more than {MAX_TASKS_PER_SUBMIT} tasks, or a body over "
                             f"{MAX_SUBMIT_BODY_BYTES} bytes: split the batch"},
        # 422 is FastAPI's own (HTTPValidationError), for the body and for the checks below.
    },
)
def post_tasks(body: SubmitTasksRequest, client: CurrentClient, session: SessionDep) -> SubmitTasksResponse:
    """Queue a batch of inference tasks (all or none); returns their ids in order.

    422 (nothing is queued): a malformed batch, an unknown model (`type: unknown_model`, the
    message lists the known ones), inputs that do not fit the model's manifest, or a deadline in
    the past.
    """
    try:
        ids = submit_tasks(session, client_id=client.id, request=body)
    except TaskBatchTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from None
    except TaskSubmissionError as exc:
        raise RequestValidationError(exc.errors) from None
    return SubmitTasksResponse(task_ids=ids)


# One `ids` value holds one or more comma-separated ids; a value with none (`ids=`, `ids=,`) is
# refused. The pattern publishes that rule in the schema; the validator enforces it with a message.
# The whitespace set is spelled out: JSON Schema patterns use ECMAScript's `\s`, which differs from
# Python's (Python also counts \x1c-\x1f), and the published rule must be the enforced one.
_WHITESPACE = (" \t\n\v\f\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
_HOLDS_AN_ID = re.compile(f"[^,{_WHITESPACE}]")
_STRIP_CHARS = "".join(
    chr(c) for c in [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0xA0, 0x1680, *range(0x2000, 0x200B),
                     0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF]
)


def _holds_a_task_id(value: str) -> str:
    if not _HOLDS_AN_ID.search(value):
        raise ValueError("give at least one task id: ids=t_…,t_… or ids=t_…&ids=t_…")
    return value


TaskIdsValue = Annotated[
    str,
    AfterValidator(_holds_a_task_id),
    WithJsonSchema({"type": "string", "pattern": _HOLDS_AN_ID.pattern}),
]


@client_router.get(
    "",
    response_model=TaskBatchPublic,
    responses={413: {"model": ErrorDetail, "description": f"more than {MAX_TASK_IDS_PER_READ} ids"}},
)
def get_task_batch(
    client: CurrentClient,
    session: SessionDep,
    ids: Annotated[list[TaskIdsValue], Query(description="task ids, repeated or comma separated")],
) -> TaskBatchPublic:
    wanted = [i.strip(_STRIP_CHARS) for raw in ids for i in raw.split(",") if i.strip(_STRIP_CHARS)]
    if len(wanted) > MAX_TASK_IDS_PER_READ:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"at most {MAX_TASK_IDS_PER_READ} ids per request, got {len(wanted)}",
        )
    tasks, missing = get_tasks(session, client_id=client.id, task_ids=wanted)
    return TaskBatchPublic(tasks=tasks, missing=missing)


@client_router.get(
    "/{task_id}",
    response_model=TaskPublic,
    responses={404: {"model": ErrorDetail, "description": "no such task for this client"}},
)
def get_task(
    client: CurrentClient, session: SessionDep, task_id: Annotated[str, Path(max_length=40)]
) -> TaskPublic:
    tasks, _missing = get_tasks(session, client_id=client.id, task_ids=[task_id])
    if not tasks:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no task {task_id!r} for this client")
    return tasks[0]


router = APIRouter()
# The node protocol's fixed paths first, so that they win over GET /v1/tasks/{task_id}.
router.include_router(node_router)
router.include_router(client_router)
