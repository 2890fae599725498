"""`noderr dev up`: the whole local stack starts on loopback, prints its URLs, and Ctrl-C/SIGTERM
stops every process it started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from noderr_local.process import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dev_up_starts_every_service_and_stops_them_all(tmp_path):
    ports = {name: free_port() for name in ("api", "dagster", "smtp", "s3", "chain", "registry")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODERR_")}
    env.update(
        NODERR_ENV="local",
        NODERR_STATE_DIR=str(tmp_path / "state"),
        NODERR_API_PORT=str(ports["api"]),
        NODERR_PUBLIC_BASE_URL=f"http://127.0.0.1:{ports['api']}",
        NODERR_DAGSTER_PORT=str(ports["dagster"]),
        NODERR_SMTP_URL=f"smtp://127.0.0.1:{ports['smtp']}",
        NODERR_S3_ENDPOINT_URL=f"http://127.0.0.1:{ports['s3']}",
        NODERR_CHAIN_RPC_URL=f"http://127.0.0.1:{ports['chain']}",
        NODERR_NODE_IMAGE_REGISTRY=f"127.0.0.1:{ports['registry']}",
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())
    log = (tmp_path / "dev-up.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "noderr_cli.main", "dev", "up"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = Path(log.name).read_text()
            if "local stack is up" in text or proc.poll() is not None:
                break
            time.sleep(1)
        text = Path(log.name).read_text()
        assert "local stack is up" in text, text[-4000:]
        for url in (f"http://127.0.0.1:{ports['api']}/admin", f"http://127.0.0.1:{ports['dagster']}"):
            assert url in text
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['dagster']}/server_info").status_code == 200
        assert "node_registry" in text  # contracts deployed on the dev chain
        # The OCI registry node images are pushed to (`noderr images release`).
        assert httpx.get(f"http://127.0.0.1:{ports['registry']}/v2/").status_code == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 6
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, f"still running after dev up stopped: {[p.pid for p in alive]}"
    assert proc.returncode == 0
