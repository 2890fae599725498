"""onnxruntime sessions for verified artifacts: explicit thread settings, a signature check against
the manifest, a warm-up inference, and the registry that swaps models atomically.

A request holds a reference to the `LoadedModel` it was validated against, so a swap never pulls a
session out from under a request in flight: the old session is freed when its last user is done.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from noderr_protocol.models import ModelManifest, TensorSpec
from node_service.signature import NUMPY_DTYPES, ORT_TYPES


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def execution_providers(preference: str, available: list[str] | None = None) -> list[str]:
    """onnxruntime providers for a NODERR_NODE_EXECUTION_PROVIDER value, best first (CPU last as
    the fallback for operators CUDA does not implement)."""
    available = ort.get_available_providers() if available is None else available
    if preference == "cpu":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if preference == "cuda":
        raise ModelLoadError(
            "provider", "NODERR_NODE_EXECUTION_PROVIDER=cuda but this onnxruntime has no CUDA "
            f"provider (available: {', '.join(available)}): run the GPU image (noderr/node-gpu) "
            "with the NVIDIA driver exposed to the container, or set it to auto")
    return [CPU_PROVIDER]


class ModelLoadError(RuntimeError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class LoadedModel:
    manifest: ModelManifest
    session: ort.InferenceSession
    path: Path
    signed_manifest: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def execution_provider(self) -> str:
        """The provider the session actually runs on (CUDA may be unavailable at session start)."""
        return self.session.get_providers()[0]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.manifest.outputs]

    @property
    def batchable(self) -> bool:
        """Requests may be concatenated only if every tensor's first axis is the batch axis."""
        return all(s.shape and s.shape[0] is None for s in [*self.manifest.inputs,
                                                             *self.manifest.outputs])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The batcher already runs batches on its own threads; ORT's spinning would steal their cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def warmup_feeds(specs: list[TensorSpec], rows: int = 1) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        shape = [rows if i == 0 else (d or 1) for i, d in enumerate(spec.shape)]
        if spec.dtype == "string":
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.dtype])
    return feeds


def _check_signature(session: ort.InferenceSession, manifest: ModelManifest) -> None:
    def describe(args) -> dict[str, str]:
        return {a.name: ORT_TYPES.get(a.type, a.type) for a in args}

    actual_in = describe(session.get_inputs())
    actual_out = describe(session.get_outputs())
    want_in = {s.name: s.dtype for s in manifest.inputs}
    missing_out = [s.name for s in manifest.outputs if s.name not in actual_out]
    if actual_in != want_in or missing_out:
        raise ModelLoadError(
            "signature",
            f"{manifest.name} v{manifest.version}: the ONNX graph's signature (inputs {actual_in}, "
            f"outputs {actual_out}) does not match the manifest (inputs {want_in}, outputs "
            f"{[s.name for s in manifest.outputs]})",
        )


def load_model(
    path: Path, manifest: ModelManifest, signed_manifest: dict[str, Any], *,
    intra_op_threads: int, inter_op_threads: int, providers: list[str] | None = None,
) -> LoadedModel:
    """Creates the session, checks it against the manifest and runs a warm-up inference."""
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(intra_op_threads, inter_op_threads),
            providers=providers or [CPU_PROVIDER],
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ModelLoadError("load", f"{manifest.name} v{manifest.version}: onnxruntime cannot "
                             f"load the artifact: {exc}") from exc
    _check_signature(session, manifest)
    model = LoadedModel(manifest=manifest, session=session, path=path,
                        signed_manifest=signed_manifest)
    try:
        outputs = model.run(warmup_feeds(manifest.inputs))
    except Exception as exc:
        raise ModelLoadError("warmup", f"{manifest.name} v{manifest.version}: warm-up inference "
                             f"failed: {exc}") from exc
    if any(v is None for v in outputs.values()):
        raise ModelLoadError("warmup", f"{manifest.name} v{manifest.version}: warm-up produced "
                             "no output")
    return model


class ModelRegistry:
    """The models being served. Swaps replace the whole mapping, so readers never see a mix."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, LoadedModel]:
        return self._models

    def get(self, name: str | None) -> LoadedModel | None:
        models = self._models
        if name is None:
            return next(iter(models.values())) if len(models) == 1 else None
        return models.get(name)

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        with self._lock:
            previous = self._models.get(model.name)
            self._models = {**self._models, model.name: model}
            return previous

    def remove(self, name: str) -> LoadedModel | None:
        with self._lock:
            models = dict(self._models)
            previous = models.pop(name, None)
            self._models = models
            return previous

    def versions(self) -> dict[str, int]:
        return {name: m.version for name, m in self._models.items()}

    def execution_provider(self) -> str | None:
        """The provider the served models run on (the first model's; None before any loads)."""
        model = next(iter(self._models.values()), None)
        return model.execution_provider if model is not None else None
