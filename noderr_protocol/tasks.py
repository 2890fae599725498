"""Client-facing task API documents: submitting inference tasks and reading their outcome.

Task inputs are named tensors, `{"input_name": [row, row, ...]}`, every tensor with the same number
of rows (a task usually has one row). A row is a number, a label, or a nested list of them with a
regular shape.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from noderr_protocol.base import MODEL_NAME_PATTERN, ProtocolModel, Tensors

MAX_ROWS_PER_TASK = 64
MAX_REPLICAS = 10


def _shape_of(value: Any, path: str) -> tuple[tuple[int, ...], str]:
    """(shape, leaf kind) of a nested list; raises ValueError on ragged or unsupported values."""
    if isinstance(value, list):
        if not value:
            return (0,), "empty"
        shapes = [_shape_of(v, f"{path}[{i}]") for i, v in enumerate(value)]
        first_shape, first_kind = shapes[0]
        for i, (shape, kind) in enumerate(shapes[1:], start=1):
            if shape != first_shape:
                raise ValueError(
                    f"{path} is ragged: element 0 has shape {list(first_shape)}, "
                    f"element {i} has shape {list(shape)}"
                )
            if kind != first_kind:
                raise ValueError(f"{path} mixes {first_kind} and {kind} values")
        return (len(value), *first_shape), first_kind
    if isinstance(value, bool):
        return (), "bool"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path} is {value}: only finite numbers are accepted")
        return (), "number"
    if isinstance(value, str):
        return (), "string"
    raise ValueError(f"{path} is {type(value).__name__}: expected numbers, strings, booleans or lists")


def tensor_row_shapes(inputs: dict[str, list[Any]]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per input tensor: (shape of one row, leaf kind). Validates the whole structure."""
    if not inputs:
        raise ValueError("inputs need at least one named tensor")
    rows_per_tensor: dict[str, int] = {}
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, rows in inputs.items():
        if not name or len(name) > 128:
            raise ValueError("input names are 1 to 128 characters")
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"input {name!r} needs a non-empty list of rows")
        if len(rows) > MAX_ROWS_PER_TASK:
            raise ValueError(
                f"input {name!r} has {len(rows)} rows; a task takes at most {MAX_ROWS_PER_TASK} "
                "(submit more tasks instead)"
            )
        shape, kind = _shape_of(rows, f"inputs[{name!r}]")
        rows_per_tensor[name] = len(rows)
        out[name] = (shape[1:], kind)
    if len(set(rows_per_tensor.values())) > 1:
        raise ValueError(f"every input needs the same number of rows, got {rows_per_tensor}")
    return out


class ValidationPolicy(ProtocolModel):
    """How many nodes run a task and how many of them must agree."""

    replicas: int = Field(default=2, ge=1, le=MAX_REPLICAS)
    quorum: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)  # default: min(2, replicas)
    tolerance: float = Field(default=1e-4, ge=0, le=1e9)  # absolute, per numeric element
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)  # default: replicas + 2
    # Let nodes with a long valid streak run the task alone (spot-checked); false = always replicate.
    adaptive: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "ValidationPolicy":
        if self.quorum is None:
            self.quorum = min(2, self.replicas)
        if self.max_replicas is None:
            self.max_replicas = min(MAX_REPLICAS, self.replicas + 2)
        if self.quorum > self.replicas:
            raise ValueError(f"quorum ({self.quorum}) cannot exceed replicas ({self.replicas})")
        if self.max_replicas < self.replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) cannot be below replicas ({self.replicas})"
            )
        return self


class TaskSpec(ProtocolModel):
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    inputs: Tensors
    priority: int = Field(default=0, ge=-1000, le=1000)  # higher runs first
    deadline: datetime | None = None  # undecided at the deadline = failed
    policy: ValidationPolicy | None = None  # default: the request's policy, then the defaults

    @field_validator("inputs")
    @classmethod
    def _regular_tensors(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        tensor_row_shapes(value)
        return value

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline needs a timezone, e.g. 2030-01-01T00:00:00Z")
        return value


class SubmitTasksRequest(ProtocolModel):
    # The maximum batch size is enforced by the API with 413 (not a validation error).
    tasks: list[TaskSpec] = Field(min_length=1)
    policy: ValidationPolicy | None = None


class SubmitTasksResponse(ProtocolModel):
    task_ids: list[str]


class TaskPolicyPublic(ProtocolModel):
    replicas: int
    quorum: int
    tolerance: float
    max_replicas: int
    adaptive: bool


class TaskPublic(ProtocolModel):
    id: str
    model: str
    status: Literal["queued", "in_progress", "validated", "failed"]
    priority: int
    deadline: datetime | None
    policy: TaskPolicyPublic
    replicas_needed: int
    results_received: int
    result: dict[str, Any] | None
    agreeing_node_ids: list[str] | None
    validated_by: Literal["quorum", "unreplicated"] | None
    fail_reason: str | None
    created_at: datetime
    decided_at: datetime | None


class TaskBatchPublic(ProtocolModel):
    tasks: list[TaskPublic]
    missing: list[str]  # ids that do not exist or belong to another client
