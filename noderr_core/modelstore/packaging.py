"""Packaging: read an ONNX model's signature, build its manifest and sign it (Ed25519).

The manifest (noderr_protocol.models.ModelManifest) names the exact bytes (sha256 + size), the
input/output tensors a node must feed and expects back, the opset, the quality metrics measured
before publishing, and the parent version. The signature covers its canonical JSON, so nodes can
verify both the manifest and, through the sha256, the downloaded bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from noderr_core.keys import key_id
from noderr_core.timeutil import utcnow
from noderr_protocol.models import ModelManifest, SignedManifest, TensorSpec
from noderr_protocol.signing import public_key_hex, sign_document


class InvalidModelFile(ValueError):
    """The file is not a loadable ONNX model (message says why)."""


# onnx.TensorProto element types -> protocol dtypes.
_ONNX_DTYPES = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 8: "string", 9: "bool"}


@dataclass(frozen=True)
class OnnxSignature:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_specs(values) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise InvalidModelFile(
                f"tensor {value.name!r} has ONNX element type {tensor.elem_type}, which the node "
                f"protocol does not carry (supported: {sorted(set(_ONNX_DTYPES.values()))})"
            )
        shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
        specs.append(TensorSpec(name=value.name, dtype=dtype, shape=shape))
    return specs


def read_onnx_signature(onnx_bytes: bytes) -> OnnxSignature:
    import onnx

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InvalidModelFile(f"not an ONNX model: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    opset = max(
        (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0
    )
    if not inputs or not model.graph.output or not opset:
        raise InvalidModelFile("ONNX model has no graph inputs, no outputs or no default-domain opset")
    return OnnxSignature(_tensor_specs(inputs), _tensor_specs(model.graph.output), opset)


def build_manifest(
    *,
    name: str,
    version: int,
    onnx_bytes: bytes,
    metrics: dict[str, float],
    parent_version: int | None,
    description: str = "",
    created_at: datetime | None = None,
) -> ModelManifest:
    signature = read_onnx_signature(onnx_bytes)
    return ModelManifest(
        name=name,
        version=version,
        sha256=sha256_hex(onnx_bytes),
        size_bytes=len(onnx_bytes),
        inputs=signature.inputs,
        outputs=signature.outputs,
        opset=signature.opset,
        metrics={k: float(v) for k, v in metrics.items()},
        parent_version=parent_version,
        created_at=created_at or utcnow(),
        description=description,
    )


def sign_manifest(manifest: ModelManifest, private_key: Ed25519PrivateKey) -> SignedManifest:
    return SignedManifest(
        manifest=manifest,
        signature=sign_document(manifest, private_key),
        key_id=key_id(public_key_hex(private_key)),
    )


@dataclass
class ModelCandidate:
    """An exported ONNX model waiting for its quality checks and packaging."""

    model_name: str
    onnx_bytes: bytes
    source: str  # "reference:iris", a local path or an s3:// URI
    metrics: dict[str, float]
    description: str = ""
