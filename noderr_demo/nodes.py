"""Node processes started from operators' bundles, exactly as `noderr-node --env-file .env` would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from noderr_local.process import free_port, stop_process_group


@dataclass
class RunningNode:
    node_id: str
    url: str
    proc: subprocess.Popen
    log_path: Path

    def ready(self) -> dict | None:
        try:
            resp = httpx.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def stop(self) -> None:
        stop_process_group(self.proc, grace=20)


def start_node(bundle_dir: Path, node_id: str, log_dir: Path) -> RunningNode:
    """Start the node from its bundle's .env; the model cache lives beside the bundle."""
    port = free_port()
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("NODERR_") or key == "DAGSTER_HOME":
            env.pop(key)  # the node knows only its bundle: no control-plane settings leak in
    env.update(
        {
            "NODERR_MODEL_CACHE_DIR": str(bundle_dir / "model-cache"),
            "NODERR_NODE_BEACON_INTERVAL_SECONDS": "3",
            "NODERR_NODE_HEARTBEAT_INTERVAL_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{node_id}.log"
    env_file = next(bundle_dir.rglob(".env"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "node_service", "--env-file", str(env_file),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=bundle_dir, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return RunningNode(node_id=node_id, url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)
