"""Node-area test support: small real ONNX models, signed manifests/beacons, and the node itself
started as a real process (`python -m node_service`) with a bundle-like environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from noderr_local.process import free_port, stop_process
from noderr_protocol.work import HeartbeatIn

ROOT = Path(__file__).resolve().parents[2]


def iris_onnx(c: float = 1.0) -> bytes:
    """A LogisticRegression on the bundled iris dataset, exported with skl2onnx (no ZipMap), as
    the models area does; different `c` values give different bytes (= different versions)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, 4]))],
                  options={id(model): {"zipmap": False}}, target_opset=17)
    return onx.SerializeToString()


def mlp_onnx(width: int = 256, depth: int = 3, n_inputs: int = 32, seed: int = 0,
             shared: bool = False) -> bytes:
    """A dense float32 MLP (MatMul+Add+Relu), big enough for batching to matter; `shared` reuses
    one hidden weight matrix for every layer (a deep but small file)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, prev_w = "x", n_inputs
    for i in range(depth):
        wname = "w_shared" if shared and i > 0 else f"w{i}"
        if not (shared and i > 1):
            inits += [
                numpy_helper.from_array((rng.standard_normal((prev_w, width)) / np.sqrt(prev_w))
                                        .astype(np.float32), wname),
                numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}"),
            ]
        bname = "b1" if shared and i > 1 else f"b{i}"
        nodes += [helper.make_node("MatMul", [prev, wname], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", bname], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}"])]
        prev, prev_w = f"h{i}", width
    wo = numpy_helper.from_array(
        (rng.standard_normal((prev_w, 4)) / np.sqrt(prev_w)).astype(np.float32), "wo")
    inits.append(wo)
    nodes.append(helper.make_node("MatMul", [prev, "wo"], ["scores"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_inputs])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def slow_onnx(width: int = 1024, depth: int = 300) -> bytes:
    """A deep MLP (one shared weight matrix) whose inference takes a noticeable time per batch,
    so that leased tasks are still in flight when the test stops the node."""
    return mlp_onnx(width=width, depth=depth, n_inputs=4, seed=7, shared=True)


def signed_manifest(private_key, *, name: str, version: int, onnx_bytes: bytes):
    from noderr_core.modelstore.packaging import build_manifest, sign_manifest

    manifest = build_manifest(name=name, version=version, onnx_bytes=onnx_bytes,
                              metrics={"accuracy": 0.9}, parent_version=None)
    return sign_manifest(manifest, private_key)


def signed_beacon(private_key, *, node_id: str, sequence: int, entries: list, ttl: timedelta =
                  timedelta(hours=1), issued_delta: timedelta = timedelta(0)):
    from noderr_core.keys import key_id
    from noderr_core.timeutil import utcnow
    from noderr_protocol.models import BeaconDocument, SignedBeacon
    from noderr_protocol.signing import public_key_hex, sign_document

    now = utcnow() + issued_delta
    doc = BeaconDocument(node_id=node_id, sequence=sequence, issued_at=now, expires_at=now + ttl,
                         models=entries)
    return SignedBeacon(beacon=doc, signature=sign_document(doc, private_key),
                        key_id=key_id(public_key_hex(private_key)))


@dataclass
class NodeProcess:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 30.0) -> int:
        stop_process(self.proc, grace=grace)
        return self.proc.returncode


def start_node(env: dict[str, str], log_dir: Path, *, wait_ready: bool = False,
               timeout: float = 60) -> NodeProcess:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NODERR_")}
    full_env.update({
        "NODERR_NODE_HOST": "127.0.0.1",
        "NODERR_NODE_PORT": str(port),
        "NODERR_NODE_INTRA_OP_THREADS": "1",
        "NODERR_NODE_BACKOFF_INITIAL_SECONDS": "0.2",
        "NODERR_NODE_BACKOFF_MAX_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
        # The repository root, as the image's /app: the node runs from its source tree.
        "PYTHONPATH": str(ROOT),
    })
    full_env.update(env)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"node-{port}.log"
    # cwd is the log dir so no stray ./.env is read: the environment is the whole config.
    proc = subprocess.Popen([sys.executable, "-m", "node_service"], cwd=log_dir, env=full_env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    node = NodeProcess(url=f"http://127.0.0.1:{port}", port=port, proc=proc, log_path=log_path,
                       env=full_env)

    what = "ready" if wait_ready else "up"
    path = "/readyz" if wait_ready else "/healthz"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited ({proc.returncode}) at start: {node.log()[-3000:]}")
        try:
            if httpx.get(f"{node.url}{path}", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise TimeoutError(f"node not {what} within {timeout}s: {node.log()[-3000:]}")
        time.sleep(0.2)
    return node


@pytest.fixture
def node_process_factory(tmp_path):
    """`node = node_process_factory(env)` starts `python -m node_service`; stopped at teardown."""
    nodes: list[NodeProcess] = []

    def start(env: dict[str, str], *, wait_ready: bool = False, timeout: float = 60) -> NodeProcess:
        node = start_node(env, tmp_path / "node", wait_ready=wait_ready, timeout=timeout)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        stop_process(node.proc)


# --- the real control plane for end-to-end node tests --------------------------------------------

@dataclass
class NodeStack:
    """The real API (uvicorn process) + database + SeaweedFS, with helpers to publish models,
    create nodes and submit tasks through the other areas' own functions and endpoints."""

    database_url: str
    api: object  # tests.support.apiserver.ApiServer
    session_factory: object
    signing_key: object  # Ed25519PrivateKey
    public_key_hex: str
    s3: object  # boto3 client
    bucket: str
    tmp: Path

    def publish(self, name: str, onnx_bytes: bytes, status: str = "active",
                rollout_percent: int | None = None) -> int:
        from noderr_core.audit import Actor
        from noderr_core.modelstore import promote_model_version
        from noderr_core.modelstore.delivery import (
            package_model,
            publish_stored_model,
            store_model_bytes,
        )

        actor = Actor.system("node-tests")
        with self.session_factory() as s:
            package = package_model(s, name=name, onnx_bytes=onnx_bytes, source="tests/node",
                                    metrics={"accuracy": 0.9}, signing_key=self.signing_key)
            upload = store_model_bytes(self.s3, self.bucket, package)
            outcome = publish_stored_model(s, self.s3, bucket=self.bucket,
                                           signed_manifest=package.signed_manifest,
                                           object_key=upload.key, source="tests/node", actor=actor,
                                           signing_key=self.signing_key)
            version = outcome.model_version.version
            if status != "staged":
                promote_model_version(s, model_name=name, version=version, to_status=status,
                                      rollout_percent=rollout_percent, actor=actor)
            s.commit()
        return version

    def object_key(self, name: str, version: int) -> str:
        from sqlalchemy import select

        from noderr_core.modelstore import ModelVersion

        with self.session_factory() as s:
            return s.scalar(select(ModelVersion.object_key).where(
                ModelVersion.name == name, ModelVersion.version == version))

    def make_node(self) -> tuple[str, str]:
        from tests.support.factories import make_node

        with self.session_factory() as s:
            node, key = make_node(s)
            s.commit()
            return node.id, key

    def client_key(self) -> str:
        import secrets

        from noderr_core.audit import Actor
        from noderr_core.tasks.clients import create_client

        with self.session_factory() as s:
            _, key = create_client(s, name=f"client-{secrets.token_hex(3)}",
                                   actor=Actor.system("node-tests"))
            s.commit()
            return key

    def submit_tasks(self, client_key: str, model: str, rows: list, replicas: int = 1) -> list[str]:
        body = {"tasks": [{"model": model, "inputs": {"input": [row]}} for row in rows],
                "policy": {"replicas": replicas}}
        with self.api.client(headers={"Authorization": f"Bearer {client_key}"}) as c:
            resp = c.post("/v1/tasks", json=body)
        assert resp.status_code in (200, 201, 202), resp.text
        return resp.json()["task_ids"]

    def node_env(self, node_id: str, key: str, cache_dir: Path, **overrides: str) -> dict[str, str]:
        env = {
            "NODERR_API_URL": self.api.url,
            "NODERR_NODE_ID": node_id,
            "NODERR_NODE_API_KEY": key,
            "NODERR_MODEL_CACHE_DIR": str(cache_dir),
            "NODERR_MODEL_PUBLIC_KEY": self.public_key_hex,
            "NODERR_NODE_BEACON_INTERVAL_SECONDS": "0.5",
            "NODERR_NODE_HEARTBEAT_INTERVAL_SECONDS": "1",
            "NODERR_NODE_IDLE_POLL_SECONDS": "0.2",
        }
        env.update(overrides)
        return env


@pytest.fixture
def node_stack_factory(tmp_path, s3_server, s3_bucket, api_server_factory):
    """`stack = node_stack_factory(database_url)`: the API on that database + this test's bucket."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from noderr_core.db import make_engine, make_session_factory
    from noderr_protocol.signing import public_key_hex

    engines = []

    def start(database_url: str, env: dict[str, str] | None = None) -> NodeStack:
        key = Ed25519PrivateKey.generate()
        private_hex = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        env = {**s3_server.env(), "NODERR_MODEL_BUCKET": s3_bucket,
               "NODERR_MODEL_SIGNING_KEY": private_hex, **(env or {})}
        api = api_server_factory(database_url, env=env)
        engine = make_engine(database_url)
        engines.append(engine)
        return NodeStack(database_url=database_url, api=api,
                         session_factory=make_session_factory(engine), signing_key=key,
                         public_key_hex=public_key_hex(key), s3=s3_server.client(),
                         bucket=s3_bucket, tmp=tmp_path)

    yield start
    for engine in engines:
        engine.dispose()


def heartbeat_in(**kw) -> HeartbeatIn:
    """A plausible heartbeat from a healthy node; keyword arguments override its fields."""
    base = dict(uptime_seconds=60, model_versions={"iris": 1}, inference_count=10, tasks_done=5,
                errors=0, latency_p50_ms=12.5, latency_p95_ms=40.0)
    base.update(kw)
    return HeartbeatIn(**{k: v for k, v in base.items() if k in HeartbeatIn.model_fields})


IRIS = "iris"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def task_views(stack, client_key: str, ids: list[str]) -> list[dict]:
    with stack.api.client(headers={"Authorization": f"Bearer {client_key}"}) as c:
        resp = c.get("/v1/tasks", params={"ids": ",".join(ids)})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return body["tasks"] if isinstance(body, dict) else body


def assignment_states(stack, node_id: str) -> dict[str, int]:
    from sqlalchemy import text as sql

    with stack.session_factory() as s:
        rows = s.execute(sql("SELECT status, COUNT(*) FROM task_assignments WHERE node_id = :n "
                             "GROUP BY status"), {"n": node_id}).all()
    return {status: count for status, count in rows}
