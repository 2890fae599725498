"""The local OCI registry: Debian's `docker-registry` (CNCF distribution) on loopback.

Images are pushed here by `noderr images release` (noderr_local/images.py) and pulled from here by
node bundles, by digest (their signatures are served by the API, noderr_core/node_image.py). It
listens only on 127.0.0.1 at the port of NODERR_NODE_IMAGE_REGISTRY (plain HTTP: engines reach it
with `--tls-verify=false`, which loopback makes safe); blobs live under the state dir. Deleting is
enabled so a test can replace a tag's content; there is no authentication (loopback only).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from noderr_core.settings import Settings
from noderr_local.process import ServiceSpec, free_port, http_ok, stop_process_group

LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
BINARY_CANDIDATES = ("/usr/bin/docker-registry", "docker-registry", "registry")


class RegistryError(RuntimeError):
    pass


def registry_binary() -> str:
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RegistryError("the OCI registry `docker-registry` is not installed: run "
                        "`bash scripts/system-deps.sh` (Debian package docker-registry)")


def registry_port(registry: str) -> int:
    host, _, port = registry.partition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise RegistryError(
            f"NODERR_NODE_IMAGE_REGISTRY={registry!r} is not a loopback host:port: the local "
            "registry serves only 127.0.0.1; point it at your production registry and do not start "
            "the local one")
    return int(port)


def config_yaml(storage_dir: Path, port: int) -> str:
    # Health checks off: the storage driver check logs every 10 s and the stack checks /v2/ itself.
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage_dir}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def write_config(directory: Path, port: int) -> Path:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    path = directory / "config.yml"
    path.write_text(config_yaml(directory / "data", port))
    return path


def registry_ready(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/v2/")


def service_spec(settings: Settings) -> ServiceSpec:
    """The local stack's registry on the port of NODERR_NODE_IMAGE_REGISTRY."""
    port = registry_port(settings.node_image_registry)
    directory = settings.state_dir / "registry"
    config = directory / "config.yml"
    return ServiceSpec(
        name="registry",
        argv=[registry_binary(), "serve", str(config)],
        url=f"http://127.0.0.1:{port}/v2/  (OCI registry; node images by digest)",
        ready=lambda: registry_ready(port),
        ready_timeout=30,
        stop_grace=10,
        before_start=lambda: write_config(directory, port),
    )


@dataclass
class RegistryProcess:
    """A running registry started by `start_registry` (tests, the demo)."""

    host: str  # host:port, what image references start with
    directory: Path
    log_path: Path
    proc: subprocess.Popen

    def tags(self, repository: str) -> list[str]:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repository}/tags/list",  # noqa: S310
                                    timeout=5) as resp:
            import json

            return json.load(resp).get("tags") or []

    def stop(self) -> None:
        stop_process_group(self.proc, 10)


def start_registry(directory: Path, *, port: int | None = None,
                   ready_timeout: float = 30.0) -> RegistryProcess:
    port = port or free_port()
    config = write_config(directory, port)
    log_path = directory / "registry.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = RegistryProcess(f"127.0.0.1:{port}", directory, log_path, proc)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RegistryError(f"docker-registry exited with {proc.returncode}: "
                                f"{log_path.read_text(errors='replace')[-2000:]}")
        if registry_ready(port):
            return server
        time.sleep(0.1)
    server.stop()
    raise RegistryError(f"docker-registry not ready after {ready_timeout}s; log: {log_path}")
