"""Validation of inference inputs against a manifest's input signature, and output encoding.

Inputs are named tensors whose first axis is the batch (rows). Everything a client can get wrong
becomes an `InputError` that the HTTP layer turns into a 422 carrying the expected signature;
too many rows is `TooManyRows` (413).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noderr_protocol.models import ModelManifest, TensorSpec

NUMPY_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "string": object,
}
# Which numpy kinds a JSON value may arrive as for each declared dtype: ints are fine for floats,
# but floats are not silently truncated to ints and numbers are never read as booleans.
ACCEPTED_KINDS = {
    "float32": "fiu",
    "float64": "fiu",
    "int64": "iu",
    "int32": "iu",
    "bool": "b",
    "string": "U",
}
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


class InputError(ValueError):
    def __init__(self, message: str, manifest: ModelManifest):
        super().__init__(message)
        self.expected = expected_signature(manifest)


class TooManyRows(ValueError):
    pass


def expected_signature(manifest: ModelManifest) -> dict[str, Any]:
    return {
        "model": manifest.name,
        "version": manifest.version,
        "inputs": [spec.model_dump() for spec in manifest.inputs],
        "note": "inputs: {name: rows}; the first dimension (null) is the batch of rows",
    }


def _convert(spec: TensorSpec, rows: Any, manifest: ModelManifest) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise InputError(f"input {spec.name!r} must be a non-empty list of rows", manifest)
    try:
        raw = np.asarray(rows)
    except ValueError as exc:
        raise InputError(f"input {spec.name!r} is ragged (rows of different lengths): {exc}",
                         manifest) from exc
    if raw.dtype.kind not in ACCEPTED_KINDS[spec.dtype]:
        got = {"f": "float", "i": "int", "u": "int", "b": "bool", "U": "string"}.get(
            raw.dtype.kind, "mixed/unsupported values")
        raise InputError(f"input {spec.name!r} must hold {spec.dtype} values, got {got}", manifest)
    if raw.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} must have {len(spec.shape)} dimensions {spec.shape} "
            f"(batch first), got shape {list(raw.shape)}", manifest)
    for axis, (want, got) in enumerate(zip(spec.shape, raw.shape, strict=True)):
        if axis > 0 and want is not None and want != got:
            raise InputError(
                f"input {spec.name!r} dimension {axis} must be {want}, got {got} "
                f"(expected shape {spec.shape}, got {list(raw.shape)})", manifest)
    if spec.dtype in ("float32", "float64") and not np.all(np.isfinite(raw)):
        raise InputError(f"input {spec.name!r} contains NaN or infinity", manifest)
    if spec.dtype == "int32" and (raw.min() < np.iinfo(np.int32).min
                                  or raw.max() > np.iinfo(np.int32).max):
        raise InputError(f"input {spec.name!r} has values outside the int32 range", manifest)
    return raw.astype(NUMPY_DTYPES[spec.dtype])


def validate_inputs(
    manifest: ModelManifest, inputs: Any, max_rows: int
) -> tuple[dict[str, np.ndarray], int]:
    """Returns the numpy feeds and the row count, or raises InputError / TooManyRows."""
    if not isinstance(inputs, dict) or not inputs:
        raise InputError("'inputs' must be an object mapping input names to rows", manifest)
    expected = {spec.name: spec for spec in manifest.inputs}
    unknown = sorted(set(inputs) - set(expected))
    missing = sorted(set(expected) - set(inputs))
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        raise InputError("; ".join(parts), manifest)
    row_counts = {name: len(rows) for name, rows in inputs.items() if isinstance(rows, list)}
    if row_counts and max(row_counts.values()) > max_rows:
        raise TooManyRows(
            f"{max(row_counts.values())} rows in one request; this node accepts at most "
            f"{max_rows} (NODERR_NODE_MAX_REQUEST_ROWS): split the request"
        )
    feeds = {name: _convert(spec, inputs[name], manifest) for name, spec in expected.items()}
    counts = {name: arr.shape[0] for name, arr in feeds.items()}
    if len(set(counts.values())) != 1:
        raise InputError(f"every input must have the same number of rows, got {counts}", manifest)
    return feeds, next(iter(counts.values()))


def encode_output(value: Any) -> Any:
    """A JSON-ready value for one output slice."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
