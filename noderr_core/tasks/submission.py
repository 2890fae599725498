"""Client-side task operations: submitting a batch of inference tasks and reading their outcome."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus
from noderr_core.tables.tasks import AssignmentStatus, ResultOutcome, Task, TaskStatus
from noderr_core.tasks.leasing import A, T, fail_overdue_tasks
from noderr_core.tasks.rules import MAX_TASKS_PER_SUBMIT
from noderr_core.timeutil import utcnow
from noderr_protocol.tasks import (
    SubmitTasksRequest,
    TaskPolicyPublic,
    TaskPublic,
    ValidationPolicy,
    tensor_row_shapes,
)

SERVED_STATUSES = (ModelVersionStatus.ACTIVE.value, ModelVersionStatus.CANARY.value)
_KIND_BY_DTYPE = {
    "float32": "number", "float64": "number", "int64": "number", "int32": "number",
    "string": "string", "bool": "bool",
}


class TaskSubmissionError(ValueError):
    """The batch is refused as a whole; `errors` are FastAPI-style {loc, msg, type} entries."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        shown = "; ".join(e["msg"] for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(shown + more)


class TaskBatchTooLarge(ValueError):
    pass


def new_task_id() -> str:
    return f"t_{secrets.token_hex(12)}"


def served_model_inputs(session: Session, names: set[str]) -> dict[str, list[dict] | None]:
    """Models nodes can run (an active or canary version), with the newest such version's inputs."""
    rows = session.execute(
        select(ModelVersion.name, ModelVersion.version, ModelVersion.status, ModelVersion.manifest)
        .where(ModelVersion.name.in_(sorted(names)), ModelVersion.status.in_(SERVED_STATUSES))
        .order_by(ModelVersion.name, ModelVersion.version)
    ).all()
    out: dict[str, list[dict] | None] = {}
    for name, _version, status, manifest in rows:
        if name in out and status != ModelVersionStatus.ACTIVE.value:
            continue  # prefer the active version's input spec over a canary's
        # model_versions.manifest is the bare ModelManifest JSON (registry.publish_model_version).
        out[name] = manifest.get("inputs") if isinstance(manifest, dict) else None
    return out


def _check_against_spec(inputs: dict[str, list[Any]], spec: list[dict]) -> str | None:
    """A message when the rows do not fit the model's declared inputs, else None."""
    shapes = tensor_row_shapes(inputs)
    declared = {s["name"]: s for s in spec if isinstance(s, dict) and "name" in s}
    if set(shapes) != set(declared):
        return f"the model takes inputs {sorted(declared)}, got {sorted(shapes)}"
    for name, (row_shape, kind) in shapes.items():
        want = declared[name].get("shape") or []
        want_row = want[1:]
        if len(want_row) != len(row_shape) or any(
            w is not None and w != g for w, g in zip(want_row, row_shape)
        ):
            shown = ["any" if w is None else w for w in want_row]
            return f"input {name!r}: each row must have shape {shown}, got {list(row_shape)}"
        want_kind = _KIND_BY_DTYPE.get(declared[name].get("dtype", ""), None)
        if want_kind and kind not in (want_kind, "empty"):
            return f"input {name!r}: the model takes {declared[name]['dtype']} values, got {kind} values"
    return None


def submit_tasks(
    session: Session,
    *,
    client_id: int,
    request: SubmitTasksRequest,
    now: datetime | None = None,
    max_tasks: int = MAX_TASKS_PER_SUBMIT,
) -> list[str]:
    """Queue a batch of tasks for a client (all or none) and return their ids in order."""
    now = now or utcnow()
    if len(request.tasks) > max_tasks:
        raise TaskBatchTooLarge(
            f"a request takes at most {max_tasks} tasks, got {len(request.tasks)}: split the batch"
        )
    served = served_model_inputs(session, {t.model for t in request.tasks})
    errors: list[dict[str, Any]] = []
    rows = []
    for i, spec in enumerate(request.tasks):
        loc = ["body", "tasks", i]
        if spec.model not in served:
            errors.append({
                "loc": [*loc, "model"], "type": "unknown_model",
                "msg": f"unknown model {spec.model!r}: no active or canary version is published "
                       f"(known: {', '.join(sorted(served)) or 'none'})",
            })
            continue
        if served[spec.model]:
            problem = _check_against_spec(spec.inputs, served[spec.model])
            if problem:
                errors.append({"loc": [*loc, "inputs"], "type": "inputs_mismatch", "msg": problem})
                continue
        if spec.deadline is not None and spec.deadline <= now:
            errors.append({
                "loc": [*loc, "deadline"], "type": "deadline_past",
                "msg": f"deadline {spec.deadline.isoformat()} is not in the future",
            })
            continue
        policy = spec.policy or request.policy or ValidationPolicy()
        rows.append({
            "id": new_task_id(),
            "client_id": client_id,
            "model_name": spec.model,
            "inputs": spec.inputs,
            "priority": spec.priority,
            "deadline_at": spec.deadline,
            "replicas": policy.replicas,
            "quorum": policy.quorum,
            "tolerance": policy.tolerance,
            "max_replicas": policy.max_replicas,
            "adaptive": policy.adaptive,
            "replicas_needed": policy.replicas,
            "leasable_at": now,
            "status": TaskStatus.QUEUED.value,
            "created_at": now,
        })
    if errors:
        raise TaskSubmissionError(errors)
    session.execute(insert(T), rows)
    return [r["id"] for r in rows]


def _public(t, received: int) -> TaskPublic:
    return TaskPublic(
        id=t.id,
        model=t.model_name,
        status=t.status,
        priority=t.priority,
        deadline=t.deadline_at,
        policy=TaskPolicyPublic(
            replicas=t.replicas, quorum=t.quorum, tolerance=t.tolerance,
            max_replicas=t.max_replicas, adaptive=t.adaptive,
        ),
        replicas_needed=t.replicas_needed,
        results_received=received,
        result=t.result,
        agreeing_node_ids=t.agreeing_node_ids,
        validated_by=t.validated_by,
        fail_reason=t.fail_reason,
        created_at=t.created_at,
        decided_at=t.decided_at,
    )


def get_tasks(
    session: Session, *, client_id: int, task_ids: list[str], now: datetime | None = None
) -> tuple[list[TaskPublic], list[str]]:
    """The client's tasks by id (in the order asked) and the ids it does not own or that don't exist."""
    now = now or utcnow()
    ids = list(dict.fromkeys(task_ids))
    owned = list(session.scalars(select(T.c.id).where(T.c.id.in_(ids), T.c.client_id == client_id)))
    if owned:
        # Deadlines are enforced lazily (no sweeper): a read shows an overdue task as failed.
        fail_overdue_tasks(session, now, task_ids=owned)
    found = {t.id: t for t in session.scalars(select(Task).where(Task.id.in_(owned)))}
    received = dict(
        session.execute(
            select(A.c.task_id, func.count())
            .where(
                A.c.task_id.in_(owned),
                A.c.status == AssignmentStatus.SUBMITTED.value,
                A.c.outcome != ResultOutcome.ERROR.value,
            )
            .group_by(A.c.task_id)
        ).all()
    )
    tasks = [_public(found[i], int(received.get(i, 0))) for i in ids if i in found]
    return tasks, [i for i in ids if i not in found]


def task_status_counts(session: Session) -> dict[str, int]:
    """How many tasks are in each status (network overview)."""
    counts = dict(session.execute(select(T.c.status, func.count()).group_by(T.c.status)).all())
    return {s.value: int(counts.get(s.value, 0)) for s in TaskStatus}
