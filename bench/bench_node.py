"""Node benchmark: POST /v1/infer (uvicorn + dynamic batcher, a real `python -m node_service`
process) against raw onnxruntime `InferenceSession.run` on the same rows, in the same run.

Models: two dense float32 MLPs (256 inputs → 3 × 1024 and 4 × 2048 ReLU → 4), bigger than the
iris reference model so that inference, not HTTP, is what batching has to win back (with the
smaller one the per-request HTTP/JSON work still dominates). The node serves it from a verified
cache (control plane unreachable: that is the offline path, no sync traffic in the way).

Figures (one row per request, the same rows for node and baseline):
- c=1: node req/s and p50 vs sequential `run` on one row;
- c=32: node req/s and p99 vs 32 threads each calling `run` on one row (what a server without a
  batcher does), and node req/s vs `run` on ready-made batches of 32 rows (the ceiling).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import BenchContext, BenchRow, median, percentile

ROOT = Path(__file__).resolve().parents[1]
AREA = "node"
N_INPUTS = 256
THREADS = max(1, min(2, os.cpu_count() or 1))


# (label, hidden width, hidden layers): the small one is dominated by HTTP/JSON costs per request,
# the large one by inference, where batching pays most.
MODELS = [("MLP 256→3×1024→4", 1024, 3), ("MLP 256→4×2048→4", 2048, 4)]


def build_model(width: int = 1024, depth: int = 3) -> bytes:
    from tests.support.node import mlp_onnx

    return mlp_onnx(width=width, depth=depth, n_inputs=N_INPUTS, seed=11)


def prepare_cache(cache_dir: Path, data: bytes) -> str:
    """A verified cache (artifact + signed `current.json`) as a synced node leaves it; returns
    the public key the node must trust."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from node_service.cache import CachedModel, ModelCache
    from noderr_core.modelstore.packaging import build_manifest, sign_manifest
    from noderr_protocol.signing import public_key_hex

    key = Ed25519PrivateKey.generate()
    signed = sign_manifest(build_manifest(name="mlp", version=1, onnx_bytes=data, metrics={},
                                          parent_version=None), key)
    cache = ModelCache(cache_dir)
    cache.ensure()
    path = cache.artifact_path(signed.manifest)
    path.write_bytes(data)
    cache.write_pointer({"mlp": CachedModel(signed.model_dump(mode="json"), signed.manifest, path)})
    return public_key_hex(key)


def start_node(workdir: Path, public_key: str) -> tuple[subprocess.Popen, str]:
    from noderr_local.process import free_port, wait_for

    port, dead_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODERR_")}
    env.update({
        "NODERR_API_URL": f"http://127.0.0.1:{dead_port}",  # offline: serve the cached model
        "NODERR_NODE_ID": "node_bench",
        "NODERR_NODE_API_KEY": "nk_bench_0000",
        "NODERR_MODEL_CACHE_DIR": str(workdir / "cache"),
        "NODERR_MODEL_PUBLIC_KEY": public_key,
        "NODERR_NODE_HOST": "127.0.0.1",
        "NODERR_NODE_PORT": str(port),
        "NODERR_NODE_INTRA_OP_THREADS": str(THREADS),
        "NODERR_NODE_WORKER_ENABLED": "false",
        "NODERR_NODE_BACKOFF_MAX_SECONDS": "60",
        "NODERR_NODE_LOG_LEVEL": "WARNING",
        # BENCH_NODERR_NODE_… overrides a node setting for an experiment.
        **{k.removeprefix("BENCH_"): v for k, v in os.environ.items()
           if k.startswith("BENCH_NODERR_")},
        "PYTHONPATH": str(ROOT),
    })
    log = (workdir / "node.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "node_service"], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 60, "bench node")
    return proc, url


class KeepAliveConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (like wrk): a few microseconds per
    request, so the load generator is not what limits the measured throughput."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def drive(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Sends every body once with `concurrency` requests in flight; (seconds, latencies)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    pending = iter(bodies)
    connections = [KeepAliveConnection(host, int(port)) for _ in range(concurrency)]
    await asyncio.gather(*[c.open() for c in connections])

    async def worker(conn: KeepAliveConnection) -> None:
        for body in pending:
            t0 = time.perf_counter()
            status, payload = await conn.post("/v1/infer", body)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"/v1/infer returned {status}: {payload[:300]!r}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*[worker(c) for c in connections])
    finally:
        await asyncio.gather(*[c.close() for c in connections])
    return time.perf_counter() - started, latencies


def raw_sequential(session, rows: np.ndarray) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(len(rows)):
        t0 = time.perf_counter()
        session.run(None, {"x": rows[i:i + 1]})
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - started, latencies


def raw_threads(session, rows: np.ndarray, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    index = iter(range(len(rows)))

    def work() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            session.run(None, {"x": rows[i:i + 1]})
            latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def raw_batched(session, rows: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        session.run(None, {"x": rows[i:i + batch]})
    return time.perf_counter() - started


def run(ctx: BenchContext) -> list[BenchRow]:
    rows: list[BenchRow] = []
    for index, (label, width, depth) in enumerate(MODELS):
        workdir = ctx.workdir / f"model{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        rows.extend(run_model(ctx, workdir, label, build_model(width, depth)))
    return rows


def run_model(ctx: BenchContext, workdir: Path, label: str, data: bytes) -> list[BenchRow]:
    from node_service.runtime import session_options
    from noderr_local.process import stop_process

    import onnxruntime as ort

    n1, n32 = (100, 640) if ctx.quick else (500, 4000)
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((max(n1, n32), N_INPUTS)).astype(np.float32)
    bodies = [json.dumps({"inputs": {"x": [row.tolist()]}}).encode() for row in rows]

    public_key = prepare_cache(workdir / "cache", data)
    session = ort.InferenceSession(data, sess_options=session_options(THREADS, 1),
                                   providers=["CPUExecutionProvider"])
    raw_sequential(session, rows[:50])  # warm-up
    raw1_s, raw1_lat = raw_sequential(session, rows[:n1])
    raw32_s, raw32_lat = raw_threads(session, rows[:n32], 32)
    rawb_s = raw_batched(session, rows[:n32], 32)
    del session

    proc, url = start_node(workdir, public_key)
    try:
        asyncio.run(drive(url, bodies[:64], 8))  # warm-up (connections, allocator)
        node1_s, node1_lat = asyncio.run(drive(url, bodies[:n1], 1))
        node32_s, node32_lat = asyncio.run(drive(url, bodies[:n32], 32))
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        stop_process(proc)

    def histogram_mean(name: str) -> float:
        total = count = 0.0
        for line in metrics.splitlines():
            if line.startswith(f"{name}_sum"):
                total = float(line.split()[-1])
            elif line.startswith(f"{name}_count"):
                count = float(line.split()[-1])
        return total / count if count else float("nan")

    mean_batch = histogram_mean("noderr_node_batch_requests")
    model_note = (f"{label} float32, {THREADS} intra-op thread(s); 1 row/request; {n1} req at "
                  f"c=1, {n32} at c=32; raw latencies are per run() call (no queueing)")
    ms = 1000.0
    tag = label.split(" ", 1)[1]
    return [
        BenchRow(AREA, f"[{tag}] /v1/infer req/s, c=1", n1 / node1_s, "req/s",
                 "raw session.run 1 row, sequential rows/s", n1 / raw1_s, notes=model_note),
        BenchRow(AREA, f"[{tag}] /v1/infer p50 ms, c=1", median(node1_lat) * ms, "ms",
                 "raw session.run p50 ms", median(raw1_lat) * ms, higher_is_better=False),
        BenchRow(AREA, f"[{tag}] /v1/infer p99 ms, c=1", percentile(node1_lat, 99) * ms, "ms",
                 "raw session.run p99 ms", percentile(raw1_lat, 99) * ms, higher_is_better=False),
        BenchRow(AREA, f"[{tag}] /v1/infer req/s, c=32 (batching)", n32 / node32_s, "req/s",
                 "raw session.run 1 row, 32 threads rows/s", n32 / raw32_s,
                 notes=f"mean requests per executed batch: {mean_batch:.1f}"),
        BenchRow(AREA, f"[{tag}] /v1/infer req/s, c=32 vs ceiling", n32 / node32_s, "req/s",
                 "raw session.run on batches of 32 rows/s", n32 / rawb_s),
        BenchRow(AREA, f"[{tag}] /v1/infer p50 ms, c=32", median(node32_lat) * ms, "ms",
                 "raw 32 threads p50 ms", median(raw32_lat) * ms, higher_is_better=False),
        BenchRow(AREA, f"[{tag}] /v1/infer p99 ms, c=32", percentile(node32_lat, 99) * ms, "ms",
                 "raw 32 threads p99 ms", percentile(raw32_lat, 99) * ms, higher_is_better=False),
    ]
