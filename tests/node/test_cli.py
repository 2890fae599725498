"""Starting the node: from the operator bundle's real `.env`, and refusing an incomplete one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from noderr_local.process import free_port

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODERR_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_incomplete_configuration_exits_with_a_clear_message(tmp_path):
    (tmp_path / ".env").write_text("NODERR_NODE_ID=node_x\nNODERR_MODEL_PUBLIC_KEY=abc\n")
    result = subprocess.run([sys.executable, "-m", "node_service"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "NODERR_API_URL: Field required" in result.stderr
    assert "NODERR_MODEL_PUBLIC_KEY" in result.stderr and "64-hex-character" in result.stderr
    assert "Traceback" not in result.stderr


def test_node_starts_from_the_bundle_env_file(tmp_path):
    from noderr_core.onboarding.bundle import env_file
    from noderr_core.settings import Settings

    settings = Settings(env="test", state_dir=tmp_path / "state",
                        public_base_url=f"http://127.0.0.1:{free_port()}")
    bundle_env = tmp_path / "bundle.env"
    bundle_env.write_text(env_file(settings, node_id="node_bundle", api_key="nk_abc_def"))
    port = free_port()
    # The bundle's cache dir is the container's volume; outside a container it is overridden.
    result = subprocess.Popen(
        [sys.executable, "-m", "node_service", "--env-file", str(bundle_env), "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env={**clean_env(), "NODERR_MODEL_CACHE_DIR": str(tmp_path / "cache")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from noderr_local.process import wait_for

        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, 60,
                 "node from bundle")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["node_id"] == "node_bundle" and ready["ready"] is False
    finally:
        from noderr_local.process import stop_process

        stop_process(result)
    assert result.returncode == 0
    out = result.stdout.read().decode()
    assert "node node_bundle starting" in out and "stopped cleanly" in out
    assert "nk_abc_def" not in out  # the key is never logged
