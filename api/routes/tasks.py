"""Task API: clients submit and read tasks (`Bearer ck_…`); nodes lease, extend, release and
report results (`Bearer nk_…`). Thin adapters over noderr_core.tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from api.deps import CurrentNode, SessionDep
from noderr_core.models.tasks import Client
from noderr_core.tasks import (
    TaskBatchTooLarge,
    TaskSubmissionError,
    authenticate_client,
    extend_leases,
    get_tasks,
    lease_tasks,
    release_tasks,
    submit_results,
    submit_tasks,
)
from noderr_core.tasks.rules import MAX_SUBMIT_BODY_BYTES, MAX_TASK_IDS_PER_READ
from noderr_protocol.tasks import SubmitTasksRequest, SubmitTasksResponse, TaskBatchPublic, TaskPublic
from noderr_protocol.work import (
    LeasedTask,
    LeaseExtendRequest,
    LeaseExtendResponse,
    LeaseRequest,
    LeaseResponse,
    ReleaseRequest,
    ReleaseResponse,
    ResultAck,
    ResultBatch,
    ResultBatchAck,
)

_bearer = HTTPBearer(auto_error=False)


def require_client(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    """The client behind `Authorization: Bearer ck_…`; unknown, revoked or disabled keys get 401."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing client API key: send 'Authorization: Bearer ck_…'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    client = authenticate_client(session, credentials.credentials)
    if client is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="unknown, revoked or malformed client API key (expected ck_<id>_<secret>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return client


CurrentClient = Annotated[Client, Depends(require_client)]

router = APIRouter(prefix="/v1/tasks")


# ---- node protocol (declared before /{task_id} so the fixed paths win) ----------------------------


@router.post("/lease", response_model=LeaseResponse, tags=["node protocol"])
def post_lease(body: LeaseRequest, node: CurrentNode, session: SessionDep) -> LeaseResponse:
    outcome = lease_tasks(
        session,
        node_id=node.id,
        operator_id=node.operator_id,
        model_names=[m.name for m in body.models],
        max_tasks=body.max_tasks,
        lease_seconds=body.lease_seconds,
    )
    return LeaseResponse(
        tasks=[
            LeasedTask(
                task_id=g.task_id, model_name=g.model_name, inputs=g.inputs,
                lease_expires_at=g.lease_expires_at,
            )
            for g in outcome.grants
        ],
        lease_expires_at=outcome.lease_expires_at,
        retry_after_seconds=1.0 if outcome.notice is None else 60.0,
        notice=outcome.notice,
    )


@router.post("/lease/extend", response_model=LeaseExtendResponse, tags=["node protocol"])
def post_lease_extend(body: LeaseExtendRequest, node: CurrentNode, session: SessionDep) -> LeaseExtendResponse:
    outcome = extend_leases(
        session, node_id=node.id, task_ids=body.task_ids, lease_seconds=body.lease_seconds
    )
    return LeaseExtendResponse(
        extended=outcome.extended, refused=outcome.refused, lease_expires_at=outcome.lease_expires_at
    )


@router.post("/results", response_model=ResultBatchAck, tags=["node protocol"])
def post_results(body: ResultBatch, node: CurrentNode, session: SessionDep) -> ResultBatchAck:
    acks = submit_results(session, node_id=node.id, results=body.results)
    return ResultBatchAck(acks=[ResultAck(task_id=a.task_id, status=a.status, reason=a.reason) for a in acks])


@router.post("/release", response_model=ReleaseResponse, tags=["node protocol"])
def post_release(body: ReleaseRequest, node: CurrentNode, session: SessionDep) -> ReleaseResponse:
    outcome = release_tasks(session, node_id=node.id, task_ids=body.task_ids)
    return ReleaseResponse(released=outcome.released, refused=outcome.refused)


# ---- client API ---------------------------------------------------------------------------------


async def _read_limited_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_SUBMIT_BODY_BYTES:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            detail=f"request body is {int(declared)} bytes; the limit is {MAX_SUBMIT_BODY_BYTES} bytes: "
            "split the batch",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SUBMIT_BODY_BYTES:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                detail=f"request body exceeds {MAX_SUBMIT_BODY_BYTES} bytes: split the batch",
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubmitTasksResponse,
    tags=["tasks"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SubmitTasksRequest.model_json_schema()}},
        }
    },
    responses={413: {"description": "too many tasks or too large a body"}},
)
async def post_tasks(request: Request, client: CurrentClient, session: SessionDep) -> SubmitTasksResponse:
    """Queue a batch of inference tasks (all or none); returns their ids in order."""
    # The body is parsed here rather than by FastAPI so that an oversized batch is a 413 (the limit
    # is checked on the bytes first, then on the task count) instead of a generic 422.
    raw = await _read_limited_body(request)
    try:
        body = SubmitTasksRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None
    try:
        ids = await run_in_threadpool(submit_tasks, session, client_id=client.id, request=body)
    except TaskBatchTooLarge as exc:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=str(exc)) from None
    except TaskSubmissionError as exc:
        raise RequestValidationError(exc.errors) from None
    return SubmitTasksResponse(task_ids=ids)


@router.get("", response_model=TaskBatchPublic, tags=["tasks"])
def get_task_batch(
    client: CurrentClient,
    session: SessionDep,
    ids: Annotated[list[str], Query(description="task ids, repeated or comma separated")],
) -> TaskBatchPublic:
    wanted = [i.strip() for raw in ids for i in raw.split(",") if i.strip()]
    if not wanted:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="ids: give at least one task id")
    if len(wanted) > MAX_TASK_IDS_PER_READ:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            detail=f"at most {MAX_TASK_IDS_PER_READ} ids per request, got {len(wanted)}",
        )
    tasks, missing = get_tasks(session, client_id=client.id, task_ids=wanted)
    return TaskBatchPublic(tasks=tasks, missing=missing)


@router.get("/{task_id}", response_model=TaskPublic, tags=["tasks"])
def get_task(
    client: CurrentClient, session: SessionDep, task_id: Annotated[str, Path(max_length=40)]
) -> TaskPublic:
    tasks, _missing = get_tasks(session, client_id=client.id, task_ids=[task_id])
    if not tasks:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no task {task_id!r} for this client")
    return tasks[0]
