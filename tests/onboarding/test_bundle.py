"""The operator bundle for real operators: image pinned by digest with a verifying engine policy,
several nodes per host, drain-aware stop, log rotation, resource limits, GPU reservation."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import yaml

from noderr_core.node_image import NodeImageRelease, pinned_node_image, record_release
from noderr_core.onboarding import bundle
from noderr_core.settings import Settings

DIGEST = "sha256:" + "ab" * 32
PUBLIC_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQGNBGd0test\n-----END PGP PUBLIC KEY BLOCK-----"


def released_settings(tmp_path, **kw) -> Settings:
    return Settings(env="test", state_dir=tmp_path / "state", node_image_registry="reg.example:5000",
                    node_image_digest=DIGEST, image_signing_public_key=PUBLIC_KEY,
                    public_base_url="https://api.noderr.example/", **kw)


def files(settings: Settings, node_id: str, tier: str | None = None) -> dict[str, str]:
    built = bundle.build_bundle(settings, node_id=node_id, api_key="nk_x_y", tier=tier)
    with zipfile.ZipFile(io.BytesIO(built.content)) as zf:
        return {n.split("/", 1)[1]: zf.read(n).decode() for n in zf.namelist()}


def env_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_image_is_pinned_by_digest_with_a_policy_that_requires_our_signature(tmp_path):
    out = files(released_settings(tmp_path), "node_0123456789abcdef")
    service = yaml.safe_load(out["docker-compose.yml"])["services"]["node"]
    assert service["image"] == f"reg.example:5000/noderr/node@{DIGEST}"
    policy = json.loads(out["containers/policy.json"])
    (requirement,) = policy["transports"]["docker"]["reg.example:5000/noderr/node"]
    assert requirement["type"] == "signedBy" and requirement["keyType"] == "GPGKeys"
    assert base64.b64decode(requirement["keyData"]).decode().strip() == PUBLIC_KEY
    assert policy["default"] == [{"type": "insecureAcceptAnything"}]  # other images as before
    regd = yaml.safe_load(out["containers/registries.d/noderr-node.yaml"])
    assert regd["docker"]["reg.example:5000/noderr/node"] == {
        "lookaside": "https://api.noderr.example/v1/node-image/signatures"}
    assert out["containers/node-image-signing.asc"].strip() == PUBLIC_KEY
    assert f"podman pull reg.example:5000/noderr/node@{DIGEST}" in out["containers/README.md"]


def test_without_a_release_the_bundle_names_the_local_build_and_claims_no_signature(tmp_path):
    out = files(Settings(env="test", state_dir=tmp_path / "state"), "node_0123456789abcdef")
    image = yaml.safe_load(out["docker-compose.yml"])["services"]["node"]["image"]
    assert image.startswith("localhost/noderr/node:")
    assert not any(name.startswith("containers/") for name in out)


def test_a_local_release_record_is_what_bundles_pin(tmp_path):
    settings = Settings(env="test", state_dir=tmp_path / "state", node_image_registry="127.0.0.1:5050")
    assert pinned_node_image(settings) is None
    record_release(settings, NodeImageRelease("127.0.0.1:5050", "noderr/node", DIGEST))
    assert pinned_node_image(settings).reference == f"127.0.0.1:5050/noderr/node@{DIGEST}"
    # Released to another registry than the configured one: not pinned (never a wrong image).
    other = Settings(env="test", state_dir=tmp_path / "state", node_image_registry="127.0.0.1:6000")
    assert pinned_node_image(other) is None


def test_two_nodes_on_one_host_share_nothing_that_collides(tmp_path):
    settings = released_settings(tmp_path)
    a, b = files(settings, "node_aaaaaaaaaaaaaaaa"), files(settings, "node_bbbbbbbbbbbbbbbb")
    docs = [yaml.safe_load(x["docker-compose.yml"]) for x in (a, b)]
    envs = [env_of(x[".env"]) for x in (a, b)]
    assert docs[0]["name"] != docs[1]["name"]
    assert docs[0]["volumes"]["models"]["name"] != docs[1]["volumes"]["models"]["name"]
    assert envs[0]["NODERR_NODE_PORT"] != envs[1]["NODERR_NODE_PORT"]
    for doc, env in zip(docs, envs, strict=True):
        port = int(env["NODERR_NODE_PORT"])
        assert 20000 <= port <= 29999
        # Same port inside and out (works with host networking too), loopback only.
        assert doc["services"]["node"]["ports"] == ["127.0.0.1:${NODERR_NODE_PORT}:${NODERR_NODE_PORT}"]
    # Stable: the same node always gets the same port.
    assert envs[0]["NODERR_NODE_PORT"] == env_of(files(settings, "node_aaaaaaaaaaaaaaaa")[".env"])[
        "NODERR_NODE_PORT"]


def test_the_engine_outwaits_the_drain_rotates_logs_and_limits_resources(tmp_path):
    out = files(released_settings(tmp_path), "node_0123456789abcdef")
    service = yaml.safe_load(out["docker-compose.yml"])["services"]["node"]
    env = env_of(out[".env"])
    drain = float(env["NODERR_NODE_SHUTDOWN_GRACE_SECONDS"])
    assert float(service["stop_grace_period"].rstrip("s")) > drain + 10
    assert service["logging"]["options"] == {"max-size": "10m", "max-file": "5"}
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"]
    assert "reservations" not in service["deploy"]["resources"]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert env["NODERR_NODE_ORT_TELEMETRY"] == "false"
    assert env["NODERR_NODE_EXECUTION_PROVIDER"] == "cpu"
    assert env["NODERR_NODE_LOG_LEVEL"] == "INFO"


def test_gpu_tier_nodes_reserve_the_gpus_and_pick_their_provider(tmp_path):
    out = files(released_settings(tmp_path), "node_0123456789abcdef", tier="GPU (A100)")
    resources = yaml.safe_load(out["docker-compose.yml"])["services"]["node"]["deploy"]["resources"]
    (device,) = resources["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert env_of(out[".env"])["NODERR_NODE_EXECUTION_PROVIDER"] == "auto"


def test_podman_run_from_the_bundle_keeps_every_compose_setting(tmp_path):
    import shlex

    from noderr_local.bundle_runner import compose_doc, run_argv

    out = files(released_settings(tmp_path), "node_0123456789abcdef", tier="gpu")
    folder = tmp_path / "bundle"
    for name, text in out.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    doc = compose_doc(folder)
    argv = run_argv(doc, folder, host_network=False)
    pairs = dict(zip(argv, argv[1:]))
    port = env_of(out[".env"])["NODERR_NODE_PORT"]
    assert pairs["--stop-timeout"] == "45" and pairs["--stop-signal"] == "SIGTERM"
    assert pairs["--publish"] == f"127.0.0.1:{port}:{port}"
    assert pairs["--volume"] == f"{doc['volumes']['models']['name']}:/var/lib/noderr/models"
    assert pairs["--device"] == "nvidia.com/gpu=all" and pairs["--memory"] == "8g"
    assert {"--read-only", "--detach"} <= set(argv) and pairs["--cap-drop"] == "ALL"
    assert [a for a in argv if a.startswith("max-")] == ["max-size=10m", "max-file=5"]
    assert shlex.split(pairs["--health-cmd"])[:2] == ["python", "-c"]
    assert argv[-1] == f"reg.example:5000/noderr/node@{DIGEST}"
    # On the host network nothing is published (the node's own port is the host's).
    assert "--publish" not in run_argv(doc, folder, host_network=True)
