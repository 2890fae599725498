"""The node's configuration bundle: a zip with `.env`, `docker-compose.yml`, `README.md` and the
container engine configuration that verifies the node image's signature.

The `.env` holds what node_service/settings.py (NodeSettings) reads; the API key in it exists in
the clear only inside this zip (the database keeps its sha256). Rules for the compose file:
- The image is pinned by digest (noderr_core/node_image.py), never by a mutable tag; with no
  release configured the bundle names the locally built image and says so.
- Everything that could collide between two nodes on one host is per node: the compose project
  name, the model volume and the port (NODERR_NODE_PORT in `.env`, the same inside and outside the
  container so host networking works too).
- The engine waits longer than the node drains (stop_grace_period > NODERR_NODE_SHUTDOWN_GRACE_SECONDS),
  rotates the logs, caps CPU and memory, and reserves the GPUs of a GPU-tier node.
- `containers/policy.json` + `containers/registries.d/` make podman/skopeo refuse a node image that
  is not signed by the platform's image-signing key (signatures served by the API).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from importlib import metadata

from noderr_core.keys import model_public_key_hex
from noderr_core.node_image import (
    containers_policy, image_signing_public_key, pinned_node_image, registries_d, signatures_url,
)
from noderr_core.settings import Settings

MODEL_CACHE_DIR = "/var/lib/noderr/models"
NODE_PORT = 8080  # the image's default; bundles give each node its own (node_port)
NODE_PORT_RANGE = (20000, 29999)
# The node finishes or releases its in-flight tasks within this (NODERR_NODE_SHUTDOWN_GRACE_SECONDS);
# the engine waits STOP_GRACE_SECONDS before SIGKILL.
DRAIN_SECONDS = 20
STOP_GRACE_SECONDS = 45
CPU_LIMIT = "2.0"
MEMORY_LIMIT = "2g"
GPU_MEMORY_LIMIT = "8g"
LOG_MAX_SIZE = "10m"
LOG_MAX_FILES = 5


def node_image_tag() -> str:
    """The locally built image (`make images`), named only when no signed release is configured."""
    try:
        version = metadata.version("noderr")
    except metadata.PackageNotFoundError:  # running from a checkout without an install
        version = "0.1.0"
    return f"localhost/noderr/node:{version}"


def node_image(settings: Settings) -> tuple[str, bool]:
    """(image reference, pinned by digest)."""
    release = pinned_node_image(settings)
    if release is not None:
        return release.reference, True
    return node_image_tag(), False


def is_gpu_tier(tier: str | None) -> bool:
    return bool(tier) and "gpu" in tier.lower()


def project_name(node_id: str) -> str:
    """Compose project names allow [a-z0-9_-]: one project (containers, volume) per node."""
    slug = "".join(c if c.isalnum() else "-" for c in node_id.lower()).strip("-")
    return f"noderr-{slug}"


def node_port(node_id: str) -> int:
    """A stable per-node port in NODE_PORT_RANGE (the operator may change it in .env)."""
    low, high = NODE_PORT_RANGE
    return low + int(hashlib.sha256(node_id.encode()).hexdigest()[:8], 16) % (high - low + 1)


@dataclass(frozen=True)
class Bundle:
    filename: str
    content: bytes


def env_file(settings: Settings, *, node_id: str, api_key: str, gpu: bool = False) -> str:
    lines = [
        "# Noderr node configuration. Keep this file secret: NODERR_NODE_API_KEY is your node's",
        "# credential and is shown only once. If it leaks, ask the Noderr admins for a new bundle.",
        f"NODERR_NODE_ID={node_id}",
        f"NODERR_NODE_API_KEY={api_key}",
        f"NODERR_API_URL={settings.public_base_url.rstrip('/')}",
        f"NODERR_MODEL_PUBLIC_KEY={model_public_key_hex(settings)}",
        f"NODERR_MODEL_CACHE_DIR={MODEL_CACHE_DIR}",
        "# This node's health/metrics port on this machine (unique per node: change it if taken).",
        f"NODERR_NODE_PORT={node_port(node_id)}",
        f"NODERR_ENV={settings.env}",
        f"NODERR_NODE_SHUTDOWN_GRACE_SECONDS={DRAIN_SECONDS}",
        f"NODERR_NODE_EXECUTION_PROVIDER={'auto' if gpu else 'cpu'}",
        "NODERR_NODE_ORT_TELEMETRY=false",
        "NODERR_NODE_LOG_LEVEL=INFO",
    ]
    return "\n".join(lines) + "\n"


def compose_file(image: str, *, node_id: str, gpu: bool = False) -> str:
    """The node's compose file. `${NODERR_NODE_PORT}` comes from `.env` (compose reads it)."""
    project = project_name(node_id)
    healthcheck = ("import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen("
                   "'http://127.0.0.1:%s/readyz' % os.environ['NODERR_NODE_PORT'], timeout=3)"
                   ".status == 200 else 1)")
    if gpu:
        resources = f"""      resources:
        limits:
          cpus: "{CPU_LIMIT}"
          memory: {GPU_MEMORY_LIMIT}
        reservations:
          devices:
            # GPU tier: every NVIDIA GPU of this machine (nvidia-container-toolkit / CDI).
            - driver: nvidia
              count: all
              capabilities: [gpu]"""
    else:
        resources = f"""      resources:
        limits:
          cpus: "{CPU_LIMIT}"
          memory: {MEMORY_LIMIT}"""
    return f"""# Noderr node {node_id}: `podman compose up -d` (or `docker compose up -d`) in this folder.
# Pull the image first with signature verification: see containers/README.md.
name: {project}
services:
  node:
    image: {image}
    pull_policy: missing
    env_file: .env
    restart: unless-stopped
    # The node drains for NODERR_NODE_SHUTDOWN_GRACE_SECONDS ({DRAIN_SECONDS}s) on SIGTERM.
    stop_signal: SIGTERM
    stop_grace_period: {STOP_GRACE_SECONDS}s
    read_only: true
    tmpfs:
      - /tmp
    security_opt:
      - no-new-privileges:true
    cap_drop:
      - ALL
    ports:
      # The node's health and metrics endpoints, reachable from this machine only.
      - "127.0.0.1:${{NODERR_NODE_PORT}}:${{NODERR_NODE_PORT}}"
    volumes:
      - models:{MODEL_CACHE_DIR}
    logging:
      driver: json-file
      options:
        max-size: "{LOG_MAX_SIZE}"
        max-file: "{LOG_MAX_FILES}"
    deploy:
{resources}
    healthcheck:
      test: ["CMD", "python", "-c", "{healthcheck}"]
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 60s
volumes:
  models:
    name: {project}-models
"""


def engine_files(settings: Settings) -> dict[str, str]:
    """containers/ files: the signature policy, the registries.d entry and the public key."""
    release = pinned_node_image(settings)
    public_key = image_signing_public_key(settings)
    if release is None or public_key is None:
        return {}
    return {
        "containers/policy.json": json.dumps(containers_policy(release.scope, public_key),
                                             indent=2) + "\n",
        "containers/registries.d/noderr-node.yaml": registries_d(release.scope,
                                                                 signatures_url(settings)),
        "containers/node-image-signing.asc": public_key,
        "containers/README.md": verification_readme(release.reference, release.scope),
    }


def verification_readme(image: str, scope: str) -> str:
    return f"""# Verify the node image

`docker-compose.yml` names the node image by digest: `{image}`.
Noderr signs it; these files make podman (and skopeo, buildah, CRI-O) refuse it at pull unless the
signature verifies against Noderr's key, so a tampered or substituted image never runs:

- `policy.json` — requires Noderr's signature for `{scope}` (other images as before);
- `registries.d/noderr-node.yaml` — where the engine fetches the signatures (the Noderr API);
- `node-image-signing.asc` — the OpenPGP public key (also inside `policy.json`).

## Podman (rootless, recommended)

```sh
mkdir -p ~/.config/containers/registries.d
cp containers/registries.d/noderr-node.yaml ~/.config/containers/registries.d/
# No ~/.config/containers/policy.json yet? Use ours:
cp containers/policy.json ~/.config/containers/policy.json
# Otherwise add the "{scope}" entry under transports.docker of containers/policy.json to yours.
podman pull {image}
podman compose up -d
```

As root, use `/etc/containers/registries.d/` and `/etc/containers/policy.json` instead.
A refused pull ends with `Source image rejected: ...`: do not work around it; tell the Noderr
admins.

## Docker Engine

Docker does not check these signatures. Verify with skopeo before starting the node:

```sh
skopeo copy --policy containers/policy.json --registries.d containers/registries.d \\
  docker://{image} docker-daemon:{scope}:verified
docker compose up -d
```
"""


def readme(settings: Settings, *, node_id: str, image: str) -> str:
    return f"""# Your Noderr node `{node_id}`

This folder configures one Noderr inference node. It contains:

- `.env` — your node id and **API key** (shown only once: keep a private copy, never share it);
- `docker-compose.yml` — the node container, a volume for its model cache and a health check;
- `README.md` — these steps.

## Steps

1. Install Docker with the Compose plugin (`docker compose version` must work).
2. Get the node image `{image}`. If the Noderr team gave you a registry, `docker pull {image}`;
   otherwise build it from the Noderr repository: `docker build -f node_service/Dockerfile -t {image} .`
3. In this folder, start the node: `docker compose up -d`.
4. Check it: `docker compose ps` shows the service `healthy` after a minute, and
   `curl http://127.0.0.1:{node_port(node_id)}/readyz` answers once the first model is loaded.
5. Follow the logs with `docker compose logs -f node`. The node downloads its models from
   {settings.public_base_url.rstrip('/')} and starts working on tasks; your rewards accrue to the
   wallet you registered once you have signed in with it on your operator pages.
6. Your operator pages: {settings.public_base_url.rstrip('/')}/operator — sign in with your payout
   wallet to prove it, see this node's status, heartbeats, earnings and alerts, rotate its key,
   request another node, and claim your rewards.

## Bond stake

{"The network requires" if settings.stake_gate_enabled else "The network may require"} bonded stake before a node leases work: from the payout
wallet you registered, approve the Stake contract for at least {settings.stake_minimum} token base
units and call `Stake.bond({node_id!r} as bytes32, amount)` (the contract address is in
`noderr chain status`). Unbonding takes {settings.stake_unbonding_delay_seconds // 3600} hours; the stake stays
slashable until then if the node's results are proven wrong (see the Noderr staking docs).

## If something goes wrong

- `401 unknown or rotated node API key` in the logs: this bundle was replaced by a newer one; use
  the newest email from Noderr.
- `403 ... suspended`: contact the Noderr admins.
- `403 ... no bonded stake` (or below the minimum, or unbonding): bond stake as above.
- Lost the `.env`? Rotate the node's key on your operator pages (or ask the admins): a new
  download link is e-mailed to you, and the key in this bundle stops working.
"""


def build_bundle(settings: Settings, *, node_id: str, api_key: str,
                 tier: str | None = None) -> Bundle:
    image, _pinned = node_image(settings)
    gpu = is_gpu_tier(tier)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        folder = f"noderr-{node_id}"
        env_info = zipfile.ZipInfo(f"{folder}/.env")
        env_info.external_attr = 0o600 << 16  # owner-only: it holds the API key
        env_info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(env_info, env_file(settings, node_id=node_id, api_key=api_key, gpu=gpu))
        zf.writestr(f"{folder}/docker-compose.yml", compose_file(image, node_id=node_id, gpu=gpu))
        zf.writestr(f"{folder}/README.md", readme(settings, node_id=node_id, image=image))
        for name, text in engine_files(settings).items():
            zf.writestr(f"{folder}/{name}", text)
    return Bundle(filename=f"noderr-{node_id}.zip", content=buf.getvalue())
