"""The node image as an operator runs it: built with podman, pushed to the local OCI registry,
pinned by digest and signed; the bundle downloaded through the portal, its engine configuration
installed, the image pulled with signature verification and the node started with `podman run`
derived from the bundle's compose file — two nodes side by side on one host, reaching quorum together.

Marked `container` (select with `-m container`); CI runs them. The sandboxes these tests run in
reach the API on the host's loopback, so noderr_local/bundle_runner.py puts the node on the host
network (production nodes reach a public https API).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from noderr_local.process import wait_for
from tests.support.node import IRIS, ROWS, assignment_states, task_views
from noderr_local.bundle_runner import read_env_file
from tests.support.containers import container_state, podman, remove_image, unzip_bundle
from tests.support.node import iris_onnx

pytestmark = [pytest.mark.container, pytest.mark.slow]

# The e2e tests' pace (the defaults poll every 15-30 s); appended as an operator would edit .env.
FAST_POLLING = {
    "NODERR_NODE_HEARTBEAT_INTERVAL_SECONDS": "1",
    "NODERR_NODE_BEACON_INTERVAL_SECONDS": "1",
    "NODERR_NODE_IDLE_POLL_SECONDS": "0.3",
    "NODERR_NODE_INTRA_OP_THREADS": "1",
}


def download_bundle(stack, into: Path) -> tuple[str, Path]:
    """The operator journey's download: an approved application, the emailed link, the portal."""
    from noderr_core.settings import Settings
    from tests.support.portal import nonce_for, provision

    settings = Settings(env="test", public_base_url=stack.api.url)
    node_id, path = provision(stack.session_factory, settings)
    with stack.api.client() as c:
        resp = c.post(path, data={"nonce": nonce_for(settings, path)})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    return node_id, unzip_bundle(resp.content, into)


def container_name(folder: Path) -> str:
    from noderr_local.bundle_runner import compose_doc
    from noderr_local.bundle_runner import container_name as name_of

    return name_of(compose_doc(folder))


@pytest.fixture
def image_stack(node_stack_factory, sqlite_url, released_node_image):
    """The platform with the released image configured and its signature in its object store."""
    from noderr_local.images import publish_signatures

    stack = node_stack_factory(sqlite_url, env=released_node_image.api_env())
    assert publish_signatures(stack.s3, stack.bucket, released_node_image.staging)
    return stack


def test_two_bundled_nodes_pull_verified_images_reach_quorum_and_stop_cleanly(
        image_stack, released_node_image, operator_host, tmp_path):
    stack, image = image_stack, released_node_image
    version = stack.publish(IRIS, iris_onnx(1.0))
    folders, names, node_ids = [], [], []
    for i in range(2):
        node_id, folder = download_bundle(stack, tmp_path / f"operator-{i}")
        compose_text = (folder / "docker-compose.yml").read_text()
        # Pinned by digest from the registry the platform configured, never a tag.
        assert f"image: {image.reference}\n" in compose_text
        env = read_env_file(folder / ".env")
        with (folder / ".env").open("a") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in FAST_POLLING.items())
        folders.append(folder)
        node_ids.append(node_id)
        names.append(container_name(folder))
        assert env["NODERR_NODE_ORT_TELEMETRY"] == "false"
    # Two bundles on one host share nothing that could collide.
    a, b = (read_env_file(f / ".env") for f in folders)
    assert a["NODERR_NODE_PORT"] != b["NODERR_NODE_PORT"]
    assert names[0] != names[1]

    remove_image(image.reference)
    operator_host.install(folders[0])
    pulled = operator_host.pull(image.reference)
    assert pulled.returncode == 0, pulled.stderr
    try:
        for folder in folders:
            operator_host.up(folder)
        for name, folder in zip(names, folders, strict=True):
            port = read_env_file(folder / ".env")["NODERR_NODE_PORT"]
            wait_for(lambda p=port: httpx.get(f"http://127.0.0.1:{p}/readyz",
                                              timeout=2).status_code == 200,
                     120, f"{name} serving the signed model")
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["models"] == {IRIS: version}
            # Non-root, read-only root filesystem, and the image's healthcheck passes.
            assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
            assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                          name).stdout.strip() == "true"
            assert podman("healthcheck", "run", name, check=False).returncode == 0
            # The container runs the image pulled by the pinned digest.
            image_id = podman("inspect", "--format", "{{.Image}}", name).stdout.strip()
            repo_digests = podman("image", "inspect", "--format", "{{json .RepoDigests}}",
                                  image_id).stdout
            assert image.reference in repo_digests

        from noderr_core.telemetry import latest_heartbeat

        def heartbeats_report_cpu() -> bool:
            with stack.session_factory() as s:
                beats = [latest_heartbeat(s, n) for n in node_ids]
                return all(b is not None and b.execution_provider == "CPUExecutionProvider"
                           and b.model_versions == {IRIS: version} for b in beats)

        wait_for(heartbeats_report_cpu, 60, "heartbeats from both containers")

        client_key = stack.client_key()
        rows = [ROWS[i % 3] for i in range(12)]
        ids = stack.submit_tasks(client_key, IRIS, rows, replicas=2)
        wait_for(lambda: all(t["status"] == "validated"
                             for t in task_views(stack, client_key, ids)), 120, "quorum")
        views = {t["id"]: t for t in task_views(stack, client_key, ids)}
        for task_id, row in zip(ids, rows, strict=True):
            assert views[task_id]["validated_by"] == "quorum"
            assert views[task_id]["result"]["label"] == [[0, 2, 1][ROWS.index(row)]]
        # Steady state is quiet: no line per lease poll or heartbeat.
        logs = podman("logs", names[0]).stderr + podman("logs", names[0]).stdout
        assert "HTTP Request" not in logs and "/v1/tasks/lease" not in logs

        # SIGTERM: the node drains and exits 0 well inside the compose stop_grace_period.
        started = time.monotonic()
        operator_host.stop(folders[0])
        elapsed = time.monotonic() - started
        state = container_state(names[0])
        assert state["ExitCode"] == 0, podman("logs", names[0]).stderr[-2000:]
        assert elapsed < 45
        assert "stopped cleanly" in podman("logs", names[0]).stderr
        assert "leased" not in assignment_states(stack, node_ids[0])
        # The other node kept running untouched.
        assert container_state(names[1])["Running"] is True
    finally:
        for folder in folders:
            operator_host.down(folder, volumes=True)


def test_unsigned_or_foreign_signed_images_are_refused_at_pull(
        image_stack, released_node_image, operator_host, tmp_path):
    from noderr_local.images import (
        generate_signing_key, publish_signatures, push_image, write_registries_d,
    )

    stack, image = image_stack, released_node_image
    _, folder = download_bundle(stack, tmp_path / "operator")
    operator_host.install(folder)

    # A different image (one label changed) pushed to the node repository: once without a
    # signature, once signed by a key that is not the platform's.
    ctr = podman("create", image.local_tag).stdout.strip()
    tampered = "localhost/noderr/node:tampered"
    try:
        podman("commit", "--quiet", "--change", "LABEL tampered=yes", ctr, tampered)
    finally:
        podman("rm", "--force", ctr, check=False)
    unsigned = push_image(tampered, f"{image.scope}:unsigned", signing=None, tls_verify=False)
    assert unsigned != image.digest
    refused = operator_host.pull(f"{image.scope}@{unsigned}")
    assert refused.returncode != 0
    assert "signature" in refused.stderr.lower(), refused.stderr

    # Now signed, but by a key that is not the platform's (its signature even published where
    # the platform's are): it does not verify against the bundle's key.
    attacker = generate_signing_key(tmp_path / "attacker", name="Not Noderr")
    staging = tmp_path / "attacker-signatures"
    regd = write_registries_d(tmp_path / "registries.d", image.scope, "http://127.0.0.1:9/x",
                              staging)
    foreign = push_image(tampered, f"{image.scope}:foreign", signing=attacker, tls_verify=False,
                         registries_dir=regd)
    assert foreign == unsigned
    assert publish_signatures(stack.s3, stack.bucket, staging)
    remove_image(tampered)
    refused = operator_host.pull(f"{image.scope}@{foreign}")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower(), refused.stderr
    assert podman("image", "exists", f"{image.scope}@{foreign}", check=False).returncode != 0
    # The genuine image still pulls under the same policy.
    remove_image(image.reference)
    assert operator_host.pull(image.reference).returncode == 0
