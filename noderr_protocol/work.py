"""Task leasing, result submission and heartbeats between a node and the control plane."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from noderr_protocol.base import (
    MAX_MODELS_PER_NODE,
    JSONCounter,
    JSONFloat,
    JSONInt,
    JSONVersion,
    ModelName,
    NonNegativeJSONFloat,
    ProtocolModel,
    TaskId,
    Tensors,
)


class LoadedModel(ProtocolModel):
    name: ModelName
    version: JSONVersion


class LeaseRequest(ProtocolModel):
    max_tasks: JSONInt = Field(default=64, ge=1, le=512)
    models: list[LoadedModel] = Field(min_length=1, max_length=MAX_MODELS_PER_NODE)
    lease_seconds: JSONInt = Field(default=120, ge=10, le=3600)


class LeasedTask(ProtocolModel):
    task_id: str
    model_name: str
    inputs: Tensors
    lease_expires_at: datetime


class LeaseResponse(ProtocolModel):
    tasks: list[LeasedTask]
    lease_expires_at: datetime | None
    retry_after_seconds: float = 1.0  # hint for an empty lease
    # Why the lease is empty when it is not simply "no work" (e.g. the node is blocked for invalid
    # results, or its daily quota is used up). Optional: older nodes ignore it.
    notice: str | None = None


class LeaseExtendRequest(ProtocolModel):
    task_ids: list[TaskId] = Field(min_length=1, max_length=512)
    lease_seconds: JSONInt = Field(default=120, ge=10, le=3600)


class LeaseExtendResponse(ProtocolModel):
    extended: list[str]
    refused: dict[str, str]  # task id -> reason
    lease_expires_at: datetime


class TaskResultIn(ProtocolModel):
    task_id: TaskId
    model_version: JSONVersion
    outputs: Tensors | None = None
    error: str | None = Field(default=None, max_length=2000)
    duration_ms: NonNegativeJSONFloat | None = None


class ResultBatch(ProtocolModel):
    results: list[TaskResultIn] = Field(min_length=1, max_length=1024)


class ResultAck(ProtocolModel):
    task_id: str
    status: Literal["accepted", "duplicate", "refused"]
    reason: str | None = None


class ResultBatchAck(ProtocolModel):
    acks: list[ResultAck]


class ReleaseRequest(ProtocolModel):
    """A node shutting down hands its unfinished leases back."""

    task_ids: list[TaskId] = Field(min_length=1, max_length=1024)


class ReleaseResponse(ProtocolModel):
    released: list[str]
    refused: dict[str, str]  # task id -> reason


class HeartbeatIn(ProtocolModel):
    uptime_seconds: JSONFloat = Field(ge=0)
    # Keys must be model names: published as patternProperties with no other property allowed.
    model_versions: dict[ModelName, JSONVersion] = Field(
        default_factory=dict, max_length=MAX_MODELS_PER_NODE,
        json_schema_extra={"additionalProperties": False},
    )
    inference_count: JSONCounter = 0
    tasks_done: JSONCounter = 0
    errors: JSONCounter = 0
    latency_p50_ms: NonNegativeJSONFloat | None = None
    latency_p95_ms: NonNegativeJSONFloat | None = None
    cpu_percent: NonNegativeJSONFloat | None = None
    memory_mb: NonNegativeJSONFloat | None = None
    agent_version: str | None = Field(default=None, max_length=32)
    # The onnxruntime execution provider the node serves with, e.g. "CUDAExecutionProvider".
    execution_provider: str | None = Field(default=None, max_length=64,
                                           pattern=r"^[A-Za-z][A-Za-z0-9]*ExecutionProvider$")


class HeartbeatAck(ProtocolModel):
    server_time: datetime
    node_status: str
    next_heartbeat_seconds: float
