"""The dynamic batcher with a real onnxruntime session: merged batches give each request exactly
what running it alone gives, a swap never mixes versions in a batch, and load forms real batches."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest

from node_service.batching import BatcherStopped, DynamicBatcher
from node_service.runtime import ModelLoadError, load_model
from noderr_core.modelstore.packaging import read_onnx_signature
from noderr_protocol.models import ModelManifest
from tests.support.node import iris_onnx


def loaded(tmp_path, version: int, c: float):
    data = iris_onnx(c)
    path = tmp_path / f"iris-{version}.onnx"
    path.write_bytes(data)
    sig = read_onnx_signature(data)
    manifest = ModelManifest(name="iris", version=version, sha256=hashlib.sha256(data).hexdigest(),
                             size_bytes=len(data), inputs=sig.inputs, outputs=sig.outputs,
                             opset=sig.opset, created_at=datetime.now(UTC))
    return load_model(path, manifest, {}, intra_op_threads=1, inter_op_threads=1)


class Recorder:
    def __init__(self):
        self.batches: list[tuple[int, int, int]] = []

    def observe_batch(self, model, rows, requests, seconds):
        self.batches.append((model.version, rows, requests))


def rows_for(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.uniform(0, 7, size=(1 + i % 3, 4)).astype(np.float32)


def test_concurrent_requests_are_batched_and_split_exactly(tmp_path):
    model = loaded(tmp_path, 1, 1.0)
    recorder = Recorder()

    async def scenario():
        batcher = DynamicBatcher(max_batch_rows=32, max_delay_s=0.01, concurrency=1,
                                 observer=recorder)
        await batcher.start()
        try:
            return await asyncio.gather(*[
                batcher.infer(model, {"input": rows_for(i)}, len(rows_for(i)))
                for i in range(40)])
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    for i, got in enumerate(results):
        label, proba = model.session.run(None, {"input": rows_for(i)})
        assert got["label"] == label.tolist()
        assert np.allclose(got["probabilities"], proba, atol=1e-6)
    assert sum(r for _, r, _ in recorder.batches) == sum(len(rows_for(i)) for i in range(40))
    assert len(recorder.batches) < 40, "requests were not merged"
    assert max(r for _, r, _ in recorder.batches) <= 32


def test_requests_validated_against_different_versions_never_share_a_batch(tmp_path):
    v1, v2 = loaded(tmp_path, 1, 0.01), loaded(tmp_path, 2, 100.0)
    recorder = Recorder()

    async def scenario():
        batcher = DynamicBatcher(max_batch_rows=64, max_delay_s=0.02, concurrency=1,
                                 observer=recorder)
        await batcher.start()
        try:
            calls = [batcher.infer(v1 if i % 2 else v2, {"input": rows_for(i)},
                                   len(rows_for(i))) for i in range(20)]
            return await asyncio.gather(*calls)
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    for i, got in enumerate(results):
        model = v1 if i % 2 else v2
        _, proba = model.session.run(None, {"input": rows_for(i)})
        assert np.allclose(got["probabilities"], proba, atol=1e-6)
    assert {v for v, _, _ in recorder.batches} == {1, 2}
    assert sum(n for _, _, n in recorder.batches) == 20


def test_stopped_batcher_refuses_new_requests(tmp_path):
    model = loaded(tmp_path, 1, 1.0)

    async def scenario():
        batcher = DynamicBatcher(max_batch_rows=8, max_delay_s=0, concurrency=1)
        await batcher.start()
        await batcher.stop()
        await batcher.infer(model, {"input": rows_for(0)}, 1)

    with pytest.raises(BatcherStopped):
        asyncio.run(scenario())


def test_an_artifact_that_is_not_onnx_does_not_load(tmp_path):
    model = loaded(tmp_path, 1, 1.0)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not a protobuf graph")
    with pytest.raises(ModelLoadError) as info:
        load_model(bad, model.manifest, {}, intra_op_threads=1, inter_op_threads=1)
    assert info.value.reason == "load"
