"""Model manifest and version beacon documents (schema_version 1).

A manifest describes one packaged ONNX model and is signed when it is packaged. The beacon tells
one node which version of each model to run; it is signed per response, carries a sequence number
that only grows (a node refuses a beacon older than the newest it has accepted) and an expiry
(a node refuses a stale one), defending against replay and freeze attacks as TUF's timestamp role.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from noderr_protocol.base import MAX_MODELS_PER_NODE, MAX_TENSORS, ProtocolModel

TensorDType = Literal["float32", "float64", "int64", "int32", "string", "bool"]


class TensorSpec(ProtocolModel):
    name: str = Field(min_length=1, max_length=128)
    dtype: TensorDType
    # None = dynamic dimension (the batch axis is always dynamic).
    shape: list[int | None] = Field(max_length=16)


class ModelManifest(ProtocolModel):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    inputs: list[TensorSpec] = Field(max_length=MAX_TENSORS)
    outputs: list[TensorSpec] = Field(max_length=MAX_TENSORS)
    opset: int
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    parent_version: int | None = None
    created_at: datetime
    framework: str = Field(default="onnx", max_length=32)
    description: str = Field(default="", max_length=4000)


class SignedManifest(ProtocolModel):
    manifest: ModelManifest
    signature: str = Field(max_length=128)  # base64 Ed25519 over canonical_bytes(manifest)
    key_id: str = Field(max_length=64)  # hex public key (first 16 chars) that signed it


class BeaconEntry(ProtocolModel):
    model_name: str
    version: int
    rollout: Literal["active", "canary"]
    signed_manifest: SignedManifest
    download_url: str
    download_url_expires_at: datetime


class BeaconDocument(ProtocolModel):
    schema_version: Literal[1] = 1
    node_id: str
    sequence: int = Field(ge=0)
    issued_at: datetime
    expires_at: datetime
    models: list[BeaconEntry] = Field(max_length=MAX_MODELS_PER_NODE)


class SignedBeacon(ProtocolModel):
    beacon: BeaconDocument
    signature: str
    key_id: str
