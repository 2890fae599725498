"""The node as a real process (`python -m node_service`) against the real control-plane API
(uvicorn), a real database and SeaweedFS: sync, serving, hot swap, tampering, replay, offline
restart, task work and graceful shutdown."""

from __future__ import annotations

import re
import threading
import time

import httpx
import numpy as np
import pytest

from tests.support.node import IRIS, ROWS, assignment_states, iris_onnx, slow_onnx, task_views
from noderr_local.process import stop_process, wait_for

def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else r"(?:\{\})?")
    match = re.search(rf"^{pattern} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def served_version(node) -> int | None:
    resp = httpx.get(f"{node.url}/readyz", timeout=5)
    return resp.json()["models"].get(IRIS)


@pytest.fixture
def stack(node_stack_factory, db_url):
    return node_stack_factory(db_url)


def test_first_sync_serves_and_validates_inputs(stack, node_process_factory, tmp_path):
    node_id, key = stack.make_node()
    node = node_process_factory(stack.node_env(node_id, key, tmp_path / "cache"))
    with node.client() as c:
        # Nothing published yet: alive, not ready, inference says why.
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        assert run_healthcheck(node.port) != 0  # the container would report "unhealthy"
        resp = c.post("/v1/infer", json={"inputs": {"input": ROWS}})
        assert resp.status_code == 503 and "no model is loaded" in resp.json()["detail"]

        version = stack.publish(IRIS, iris_onnx(1.0))
        wait_for(lambda: c.get("/readyz").status_code == 200, 60, "first sync")
        ready = c.get("/readyz").json()
        assert ready["models"] == {IRIS: version} and ready["synced"] is True

        resp = c.post("/v1/infer", json={"inputs": {"input": ROWS}})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == IRIS and body["version"] == version
        assert body["outputs"]["label"] == [0, 2, 1]  # setosa, virginica, versicolor
        assert np.allclose(np.sum(body["outputs"]["probabilities"], axis=1), 1.0, atol=1e-5)

        # Malformed input: precise 4xx, never 500.
        bad = [
            (b"{not json", 422, None),
            ({"inputs": {"input": ROWS}, "surprise": 1}, 422, None),
            ({"inputs": {"petals": ROWS}}, 422, "missing input(s) ['input']"),
            ({"inputs": {"input": [[1, 2, 3]]}}, 422, "dimension 1 must be 4"),
            ({"inputs": {"input": [["a", "b", "c", "d"]]}}, 422, "must hold float32"),
            ({"inputs": {"input": [[1, 2, 3, 4], [1]]}}, 422, "ragged"),
            ({"inputs": {"input": [[0, 0, 0, 0]] * 65}}, 413, "at most 64"),
            ({"model": "nope", "inputs": {"input": ROWS}}, 404, "not served here"),
        ]
        for payload, status, message in bad:
            if isinstance(payload, bytes):
                resp = c.post("/v1/infer", content=payload,
                              headers={"Content-Type": "application/json"})
            else:
                resp = c.post("/v1/infer", json=payload)
            assert resp.status_code == status, (payload, resp.text)
            if message:
                assert message in resp.json()["detail"]
            if status == 422 and message and "input" in message:
                assert resp.json()["expected"]["inputs"] == [
                    {"name": "input", "dtype": "float32", "shape": [None, 4]}]

        text = c.get("/metrics").text
        assert metric(text, "noderr_node_model_version", model=IRIS) == version
        assert metric(text, "noderr_node_inference_requests_total", model=IRIS, outcome="ok") >= 1
        assert metric(text, "noderr_node_inference_requests_total", model=IRIS,
                      outcome="client_error") == 5
        # The unknown model, the bad JSON and the unknown field.
        assert metric(text, "noderr_node_inference_requests_total", model="unknown",
                      outcome="client_error") == 3
        assert metric(text, "noderr_node_inference_latency_seconds_count", model=IRIS) >= 1
        assert "noderr_node_batch_rows_bucket" in text

    # The node introduced itself: heartbeats carry its versions and made it online.
    with stack.api.client(headers={"Authorization": f"Bearer {key}"}) as api:
        wait_for(lambda: api.get("/v1/nodes/me").json()["status"] == "online", 30, "heartbeat")
    from noderr_core.telemetry import latest_heartbeat

    def heartbeat_has_version() -> bool:
        with stack.session_factory() as s:
            beat = latest_heartbeat(s, node_id)
            return beat is not None and beat.model_versions == {IRIS: version}

    wait_for(heartbeat_has_version, 30, "heartbeat with model versions")
    assert node.stop() == 0


@pytest.fixture
def sqlite_stack(node_stack_factory, sqlite_url):
    return node_stack_factory(sqlite_url)


def test_hot_swap_under_load_has_zero_failures(sqlite_stack, node_process_factory, tmp_path):
    import onnxruntime as ort

    stack = sqlite_stack
    models = {1: iris_onnx(0.01), 2: iris_onnx(100.0)}
    v1 = stack.publish(IRIS, models[1])
    node_id, key = stack.make_node()
    node = node_process_factory(stack.node_env(node_id, key, tmp_path / "cache",
                                               NODERR_NODE_WORKER_ENABLED="false"),
                                wait_ready=True)
    expected = {}
    for version, data in models.items():
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        expected[version] = session.run(None, {"input": np.array(ROWS, np.float32)})[1]

    stop = threading.Event()
    per_client: list[list[tuple[int, int | None]]] = [[] for _ in range(8)]
    mismatches: list[tuple[int, list]] = []

    def load(log: list) -> None:
        with node.client() as c:
            while not stop.is_set():
                resp = c.post("/v1/infer", json={"inputs": {"input": ROWS}})
                version = resp.json().get("version") if resp.status_code == 200 else None
                log.append((resp.status_code, version))
                if version is not None and not np.allclose(
                        resp.json()["outputs"]["probabilities"], expected[version], atol=1e-5):
                    mismatches.append((version, resp.json()["outputs"]["probabilities"]))

    threads = [threading.Thread(target=load, args=(log,)) for log in per_client]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(len(x) for x in per_client) >= 100, 60, "load on v1")
        v2 = stack.publish(IRIS, models[2])
        assert v2 == 2 and v1 == 1
        wait_for(lambda: all(x and x[-1][1] == v2 for x in per_client), 60, "swap to v2")
        marker = sum(len(x) for x in per_client)
        wait_for(lambda: sum(len(x) for x in per_client) >= marker + 100, 60, "load on v2")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    responses = [r for x in per_client for r in x]
    assert {status for status, _ in responses} == {200}, "a request failed during the swap"
    assert {version for _, version in responses} == {v1, v2}
    assert not mismatches, "a response did not match the version it claimed"
    for log in per_client:  # each client saw v1, then v2, never back
        versions = [v for _, v in log]
        first_v2 = versions.index(v2)
        assert set(versions[first_v2:]) == {v2}
    text = node.client().get("/metrics").text
    assert metric(text, "noderr_node_model_swaps_total", model=IRIS) == 2  # v1 then v2
    # Concurrent requests were merged into batches.
    assert metric(text, "noderr_node_batch_requests_count", model=IRIS) < len(responses)
    assert node.stop() == 0


def test_tampered_artifact_and_replayed_beacon_keep_the_last_good_model(
        sqlite_stack, node_process_factory, tmp_path):
    from sqlalchemy import text as sql

    from noderr_core.audit import Actor
    from noderr_core.modelstore import promote_model_version, rollback_model

    stack = sqlite_stack
    v1 = stack.publish(IRIS, iris_onnx(0.01))
    node_id, key = stack.make_node()
    node = node_process_factory(stack.node_env(node_id, key, tmp_path / "cache",
                                               NODERR_NODE_WORKER_ENABLED="false"),
                                wait_ready=True)
    c = node.client()

    # v2 is published, then its object is tampered with in the store before it goes active.
    good = iris_onnx(100.0)
    v2 = stack.publish(IRIS, good, status="staged")
    tampered = bytearray(good)
    tampered[len(tampered) // 3] ^= 0x01
    stack.s3.put_object(Bucket=stack.bucket, Key=stack.object_key(IRIS, v2), Body=bytes(tampered))
    with stack.session_factory() as s:
        promote_model_version(s, model_name=IRIS, version=v2, to_status="active",
                              actor=Actor.system("node-tests"))
        s.commit()
    wait_for(lambda: metric(c.get("/metrics").text, "noderr_node_model_sync_errors_total",
                            reason="sha256") >= 1, 60, "tampered artifact rejected")
    assert c.get("/readyz").json()["models"] == {IRIS: v1}
    assert "sha256" in c.get("/readyz").json()["last_sync_error"]
    resp = c.post("/v1/infer", json={"inputs": {"input": ROWS}})
    assert resp.status_code == 200 and resp.json()["version"] == v1
    assert not list((tmp_path / "cache" / "models").glob(f"{IRIS}-v{v2}-*"))

    # The store is repaired: the node picks the genuine v2 up on a later poll.
    stack.s3.put_object(Bucket=stack.bucket, Key=stack.object_key(IRIS, v2), Body=good)
    wait_for(lambda: served_version(node) == v2, 60, "genuine v2 served")
    sequence = c.get("/readyz").json()["beacon_sequence"]

    # A correctly signed beacon with an older sequence (a control plane restored from an old
    # backup, or a replaying proxy) pointing back at v1 is refused.
    with stack.session_factory() as s:  # one transaction: the node never sees the newer state
        rollback_model(s, model_name=IRIS, actor=Actor.system("node-tests"))
        s.execute(sql("UPDATE beacon_state SET sequence = :seq WHERE id = 1"),
                  {"seq": sequence - 3})
        s.commit()
    wait_for(lambda: metric(c.get("/metrics").text, "noderr_node_model_sync_errors_total",
                            reason="sequence") >= 2, 60, "replayed beacon refused")
    assert served_version(node) == v2
    assert "older than the accepted sequence" in c.get("/readyz").json()["last_sync_error"]
    c.close()
    assert node.stop() == 0


def run_healthcheck(port: int) -> int:
    """Runs the Dockerfile's HEALTHCHECK command (with this interpreter) against a node."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "node_service" / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text).group(1))
    assert cmd[0] == "python"
    env = {**os.environ, "NODERR_NODE_PORT": str(port)}
    return subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True,
                          timeout=30).returncode


def test_restart_with_control_plane_down_serves_the_cached_model(
        sqlite_stack, node_process_factory, tmp_path):
    stack = sqlite_stack
    version = stack.publish(IRIS, iris_onnx(1.0))
    node_id, key = stack.make_node()
    env = stack.node_env(node_id, key, tmp_path / "cache")
    first = node_process_factory(env, wait_ready=True)
    assert run_healthcheck(first.port) == 0
    assert first.stop() == 0

    # A node with a wrong key logs why, backs off and keeps running (it never crashes).
    stranger = node_process_factory(stack.node_env(node_id, "nk_unknown_000000000000",
                                                   tmp_path / "other-cache"))
    with stranger.client() as c:
        wait_for(lambda: metric(c.get("/metrics").text, "noderr_node_control_plane_errors_total",
                                call="beacon", kind="auth") >= 1, 30, "auth failure counted")
    assert stranger.proc.poll() is None
    assert "refused this node's key" in stranger.log()
    assert stranger.stop() == 0

    stop_process(stack.api.proc)  # the control plane is gone
    second = node_process_factory(env, wait_ready=True)
    with second.client() as c:
        ready = c.get("/readyz").json()
        assert ready["models"] == {IRIS: version}
        assert ready["serving_from_cache"] is True and ready["synced"] is False
        resp = c.post("/v1/infer", json={"inputs": {"input": ROWS}})
        assert resp.status_code == 200 and resp.json()["version"] == version
        wait_for(lambda: metric(c.get("/metrics").text, "noderr_node_model_sync_errors_total",
                                reason="unreachable") >= 2, 30, "sync retries counted")
        assert "unreachable" in c.get("/readyz").json()["last_sync_error"]
    assert run_healthcheck(second.port) == 0
    assert second.proc.poll() is None, "the node must keep running while the API is down"
    assert second.stop() == 0


def test_node_works_leased_tasks_and_reports_them(stack, node_process_factory, tmp_path):
    version = stack.publish(IRIS, iris_onnx(1.0))
    node_id, key = stack.make_node()
    node = node_process_factory(stack.node_env(node_id, key, tmp_path / "cache"), wait_ready=True)
    client_key = stack.client_key()
    rows = [ROWS[i % 3] for i in range(40)]
    ids = stack.submit_tasks(client_key, IRIS, rows, replicas=1)

    wait_for(lambda: all(t["results_received"] == 1 for t in task_views(stack, client_key, ids)),
             60, "all tasks worked")
    views = {t["id"]: t for t in task_views(stack, client_key, ids)}
    for task_id, row in zip(ids, rows, strict=True):
        result = views[task_id]["result"]
        if result is not None:  # validated: the node's output is the task's result
            assert result["label"] == [[0, 2, 1][ROWS.index(row)]]
    with node.client() as c:
        text = c.get("/metrics").text
        assert metric(text, "noderr_node_tasks_total", outcome="done") == 40
        # The tasks went through the batcher: fewer batches than tasks.
        assert metric(text, "noderr_node_batch_requests_count", model=IRIS) < 40

    from noderr_core.telemetry import latest_heartbeat

    def heartbeat_counts_tasks() -> bool:
        with stack.session_factory() as s:
            beat = latest_heartbeat(s, node_id)
            return beat is not None and beat.tasks_done == 40 and beat.model_versions == {
                IRIS: version}

    wait_for(heartbeat_counts_tasks, 30, "heartbeat reporting the tasks")
    assert node.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("grace", [0, 60], ids=["release", "finish"])
def test_sigterm_stops_leasing_and_finishes_or_releases_tasks(
        sqlite_stack, node_process_factory, tmp_path, grace):
    stack = sqlite_stack
    stack.publish("slow", slow_onnx())
    node_id, key = stack.make_node()
    n_tasks = 64
    node = node_process_factory(stack.node_env(
        node_id, key, tmp_path / "cache",
        NODERR_NODE_SHUTDOWN_GRACE_SECONDS=str(grace),
        NODERR_NODE_MAX_BATCH_ROWS="1",  # one row per session.run: the work takes a while
        NODERR_NODE_BATCH_CONCURRENCY="1",
        NODERR_NODE_LEASE_MAX_TASKS=str(n_tasks),
        NODERR_NODE_LEASE_SECONDS="10",
    ), wait_ready=True)
    client_key = stack.client_key()
    with stack.api.client(headers={"Authorization": f"Bearer {client_key}"}) as c:
        resp = c.post("/v1/tasks", json={
            "tasks": [{"model": "slow", "inputs": {"x": [[0.1 * i, 0.2, 0.3, 0.4]]}}
                      for i in range(n_tasks)],
            "policy": {"replicas": 1}})
        assert resp.status_code in (200, 201, 202), resp.text
        ids = resp.json()["task_ids"]
    wait_for(lambda: assignment_states(stack, node_id).get("leased", 0) == n_tasks, 60,
             "tasks leased")
    code = node.stop(grace=grace + 60)
    assert code == 0, node.log()[-2000:]
    states = assignment_states(stack, node_id)
    assert "leased" not in states, states  # nothing left dangling on the control plane
    if grace == 0:
        assert states.get("released", 0) >= 1, states
        # Released tasks are leasable again at once by another node.
        other_id, other_key = stack.make_node()
        with stack.api.client(headers={"Authorization": f"Bearer {other_key}"}) as c:
            lease = c.post("/v1/tasks/lease", json={"models": [{"name": "slow", "version": 1}],
                                                    "max_tasks": n_tasks}).json()
        assert len(lease["tasks"]) == states["released"]
    else:
        # Finished within the grace period (leases extended while it worked), all accepted.
        assert states == {"submitted": n_tasks}, states
        assert "refused" not in node.log()
    assert "stopped cleanly" in node.log()
    assert len(ids) == n_tasks
