"""The node's configuration bundle: a zip with `.env`, `docker-compose.yml` and `README.md`.

The `.env` holds what node_service/settings.py (NodeSettings) reads; the API key in it exists in
the clear only inside this zip (the database keeps its sha256).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from importlib import metadata

from noderr_core.keys import model_public_key_hex
from noderr_core.settings import Settings

MODEL_CACHE_DIR = "/var/lib/noderr/models"
NODE_PORT = 8080


def node_image_tag() -> str:
    try:
        version = metadata.version("noderr")
    except metadata.PackageNotFoundError:  # running from a checkout without an install
        version = "0.1.0"
    return f"noderr/node:{version}"


@dataclass(frozen=True)
class Bundle:
    filename: str
    content: bytes


def env_file(settings: Settings, *, node_id: str, api_key: str) -> str:
    lines = [
        "# Noderr node configuration. Keep this file secret: NODERR_NODE_API_KEY is your node's",
        "# credential and is shown only once. If it leaks, ask the Noderr admins for a new bundle.",
        f"NODERR_NODE_ID={node_id}",
        f"NODERR_NODE_API_KEY={api_key}",
        f"NODERR_API_URL={settings.public_base_url.rstrip('/')}",
        f"NODERR_MODEL_PUBLIC_KEY={model_public_key_hex(settings)}",
        f"NODERR_MODEL_CACHE_DIR={MODEL_CACHE_DIR}",
        f"NODERR_NODE_PORT={NODE_PORT}",
        f"NODERR_ENV={settings.env}",
    ]
    return "\n".join(lines) + "\n"


def compose_file(image: str) -> str:
    return f"""# Noderr node: `docker compose up -d` in this folder.
name: noderr-node
services:
  node:
    image: {image}
    env_file: .env
    restart: unless-stopped
    ports:
      # The node's health and metrics endpoints, reachable from this machine only.
      - "127.0.0.1:{NODE_PORT}:{NODE_PORT}"
    volumes:
      - models:{MODEL_CACHE_DIR}
    healthcheck:
      test: ["CMD", "python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{NODE_PORT}/readyz', timeout=3).status == 200 else 1)"]
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 60s
volumes:
  models:
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
   `curl http://127.0.0.1:{NODE_PORT}/readyz` answers once the first model is loaded.
5. Follow the logs with `docker compose logs -f node`. The node downloads its models from
   {settings.public_base_url.rstrip('/')} and starts working on tasks; your rewards accrue to the
   wallet you registered once you have signed in with it on your operator pages.
6. Your operator pages: {settings.public_base_url.rstrip('/')}/operator — sign in with your payout
   wallet to prove it, see this node's status, heartbeats, earnings and alerts, rotate its key,
   request another node, and claim your rewards.

## If something goes wrong

- `401 unknown or rotated node API key` in the logs: this bundle was replaced by a newer one; use
  the newest email from Noderr.
- `403 ... suspended`: contact the Noderr admins.
- Lost the `.env`? Rotate the node's key on your operator pages (or ask the admins): a new
  download link is e-mailed to you, and the key in this bundle stops working.
"""


def build_bundle(settings: Settings, *, node_id: str, api_key: str) -> Bundle:
    image = node_image_tag()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        folder = f"noderr-{node_id}"
        env_info = zipfile.ZipInfo(f"{folder}/.env")
        env_info.external_attr = 0o600 << 16  # owner-only: it holds the API key
        env_info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(env_info, env_file(settings, node_id=node_id, api_key=api_key))
        zf.writestr(f"{folder}/docker-compose.yml", compose_file(image))
        zf.writestr(f"{folder}/README.md", readme(settings, node_id=node_id, image=image))
    return Bundle(filename=f"noderr-{node_id}.zip", content=buf.getvalue())
