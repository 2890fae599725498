"""Container-test support: the node image built with podman, a local OCI registry, the image pushed
and signed, and operator-side engine configuration (a private HOME holding the bundle's
`policy.json` and `registries.d`, as a rootless operator installs them).

The image is built once per test session with cached layers (seconds when nothing changed); the
base image comes from scripts/base-image.sh (cached in the engine's storage across runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from noderr_local.bundle_runner import OperatorEngine
from noderr_local.images import (
    ImageSigningKey, build_image, container_engine, engine_env, generate_signing_key, image_specs,
    push_signed,
)
from noderr_local.registry import RegistryProcess, start_registry

REPOSITORY = "noderr/node"


def podman(*args: str, env: dict[str, str] | None = None, check: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=env or engine_env(), capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


@dataclass
class ReleasedImage:
    registry: RegistryProcess
    local_tag: str
    digest: str
    signing: ImageSigningKey
    staging: Path  # its signature, in lookaside layout, for publish_signatures()

    @property
    def scope(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}"

    @property
    def reference(self) -> str:
        return f"{self.scope}@{self.digest}"

    def api_env(self) -> dict[str, str]:
        """What the API needs to pin this image in the bundles it hands out."""
        return {
            "NODERR_NODE_IMAGE_REGISTRY": self.registry.host,
            "NODERR_NODE_IMAGE_REPOSITORY": REPOSITORY,
            "NODERR_NODE_IMAGE_DIGEST": self.digest,
            "NODERR_IMAGE_SIGNING_PUBLIC_KEY": self.signing.public_key(),
        }


@pytest.fixture(scope="session")
def released_node_image(tmp_path_factory):
    """The node image: built (cached layers), pushed to a fresh local registry and signed."""
    if not shutil.which("podman") or not shutil.which("skopeo"):
        pytest.fail("podman/skopeo are not installed: run `bash scripts/system-deps.sh`")
    assert container_engine() == "podman"
    root = tmp_path_factory.mktemp("node-image")
    tag = build_image(image_specs()["node"])
    registry = start_registry(root / "registry")
    try:
        signing = generate_signing_key(root / "keys")
        # The lookaside URL only matters to readers (each test's API); signing writes to staging.
        pushed = push_signed(tag, f"{registry.host}/{REPOSITORY}", "release", signing=signing,
                             lookaside="http://127.0.0.1:9/unused", workdir=root / "push",
                             tls_verify=False)
        yield ReleasedImage(registry, tag, pushed.digest, signing, pushed.staging)
    finally:
        registry.stop()


@pytest.fixture
def operator_host(tmp_path) -> OperatorEngine:
    """podman as on an operator's machine: a private HOME for the bundle's engine policy."""
    home = tmp_path / "operator-home"
    home.mkdir()
    return OperatorEngine(home)


def unzip_bundle(content: bytes, into: Path) -> Path:
    """Extracts a bundle zip as an operator would; returns its folder."""
    import io

    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(into)
        folder = into / zf.namelist()[0].split("/")[0]
    (folder / ".env").chmod(0o600)
    return folder


def container_state(name: str) -> dict:
    out = podman("inspect", "--format", "{{json .State}}", name).stdout
    return json.loads(out)


def remove_image(reference: str) -> None:
    podman("rmi", "--force", reference, check=False)


