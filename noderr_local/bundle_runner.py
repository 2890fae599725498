"""Runs an operator's node bundle with podman, the way the bundle's containers/README.md says.

Used by the demo (a node as a container) and the container tests. Rules:
- The engine configuration from the bundle (`containers/policy.json`, `containers/registries.d/`)
  is installed into a private HOME (`~/.config/containers/`, what a rootless operator does), so
  every pull of the node image is verified against the platform's signing key and nothing on this
  machine's /etc/containers changes.
- The node starts with `podman run` derived from the bundle's own compose file (`run_argv`): every
  setting of the service is carried over (stop signal and grace period, read-only root, dropped
  capabilities, tmpfs, named volume, log rotation, CPU/memory limits, GPU reservation as CDI
  devices, healthcheck). Debian's podman-compose 1.0 is not used: it drops stop_grace_period
  (podman would SIGKILL a draining node after 10 s) and reports success when `podman run` fails.
- Here the control plane listens on this machine's loopback, so the node joins the host network
  (production nodes reach a public https API and keep their own network; the published port is
  then the same NODERR_NODE_PORT on 127.0.0.1).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from noderr_local.images import ImageError, engine_env

def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass
class OperatorEngine:
    """podman as configured on an operator's machine (a private HOME holding the bundle's policy)."""

    home: Path

    def env(self) -> dict[str, str]:
        # containers/image reads $HOME/.config/containers/{policy.json,registries.d} first.
        return engine_env() | {"HOME": str(self.home)}

    def install(self, bundle_dir: Path) -> None:
        source = bundle_dir / "containers"
        if not (source / "policy.json").exists():
            raise ImageError(f"{bundle_dir} has no containers/policy.json: the platform has no "
                             "signed node image release configured (`noderr images release`)")
        config = self.home / ".config" / "containers"
        (config / "registries.d").mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "policy.json", config / "policy.json")
        for entry in (source / "registries.d").iterdir():
            shutil.copy(entry, config / "registries.d" / entry.name)

    def podman(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def pull(self, reference: str, *, tls_verify: bool = False) -> subprocess.CompletedProcess:
        """`podman pull`: refused unless the signature verifies (the installed policy)."""
        return self.podman("pull", f"--tls-verify={'true' if tls_verify else 'false'}", reference)

    def up(self, bundle_dir: Path) -> str:
        """Creates the bundle's volume and starts its node container; returns the container name."""
        doc = compose_doc(bundle_dir)
        for volume in (doc.get("volumes") or {}).values():
            name = volume["name"]
            if self.podman("volume", "exists", name).returncode != 0:
                self._check(self.podman("volume", "create", name), "volume create")
        argv = run_argv(doc, bundle_dir)
        self._check(self.podman(*argv), "run")
        return container_name(doc)

    def stop(self, bundle_dir: Path) -> None:
        """What `compose stop` does: the stop signal, then SIGKILL after stop_grace_period."""
        doc = compose_doc(bundle_dir)
        grace = _seconds(doc["services"]["node"].get("stop_grace_period", "10s"))
        self._check(self.podman("stop", "--time", str(grace), container_name(doc),
                                timeout=grace + 60), "stop")

    def down(self, bundle_dir: Path, *, volumes: bool = False) -> None:
        doc = compose_doc(bundle_dir)
        self.podman("rm", "--force", "--time", "5", container_name(doc))
        if volumes:
            for volume in (doc.get("volumes") or {}).values():
                self.podman("volume", "rm", "--force", volume["name"])

    @staticmethod
    def _check(result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            raise ImageError(f"podman {what} failed ({result.returncode}): "
                             f"{(result.stdout + result.stderr)[-3000:]}")


def compose_doc(bundle_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((bundle_dir / "docker-compose.yml").read_text())


def container_name(doc: dict) -> str:
    return f"{doc['name']}_node_1"


def _seconds(value: str | int | float) -> int:
    text = str(value).strip()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return max(1, round(float(text[:-len(suffix)]) * factor))
    return max(1, round(float(text)))


def _interpolate(text: str, env: dict[str, str]) -> str:
    import re

    return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: env[m.group(1)], text)


def run_argv(doc: dict, bundle_dir: Path, *, host_network: bool = True) -> list[str]:
    """`podman run -d ...` for the bundle's `node` service, `${VAR}`s from the bundle's .env."""
    service = doc["services"]["node"]
    env = read_env_file(bundle_dir / ".env")
    volumes = doc.get("volumes") or {}
    argv = ["run", "--detach", "--name", container_name(doc),
            "--label", f"io.noderr.bundle={doc['name']}",
            "--env-file", str(bundle_dir / service["env_file"]),
            "--stop-signal", service.get("stop_signal", "SIGTERM"),
            "--stop-timeout", str(_seconds(service.get("stop_grace_period", "10s"))),
            "--pull", "never"]  # pulled (and verified) beforehand by OperatorEngine.pull
    if service.get("restart"):
        argv += ["--restart", service["restart"]]
    if service.get("read_only"):
        argv.append("--read-only")
    for path in service.get("tmpfs") or []:
        argv += ["--tmpfs", path]
    for opt in service.get("security_opt") or []:
        argv += ["--security-opt", opt]
    for cap in service.get("cap_drop") or []:
        argv += ["--cap-drop", cap]
    if host_network:
        argv += ["--network", "host"]
    else:
        for port in service.get("ports") or []:
            argv += ["--publish", _interpolate(port, env)]
    for mount in service.get("volumes") or []:
        source, _, target = mount.partition(":")
        argv += ["--volume", f"{volumes[source]['name'] if source in volumes else source}:{target}"]
    logging = service.get("logging") or {}
    if logging.get("driver"):
        argv += ["--log-driver", logging["driver"]]
        for key, value in (logging.get("options") or {}).items():
            argv += ["--log-opt", f"{key}={value}"]
    resources = (service.get("deploy") or {}).get("resources") or {}
    limits = resources.get("limits") or {}
    if limits.get("cpus"):
        argv += ["--cpus", str(limits["cpus"])]
    if limits.get("memory"):
        argv += ["--memory", str(limits["memory"])]
    for device in (resources.get("reservations") or {}).get("devices") or []:
        if device.get("driver") == "nvidia":
            argv += ["--device", "nvidia.com/gpu=all"]  # CDI (nvidia-ctk cdi generate)
    check = service.get("healthcheck")
    if check:
        test = check["test"]
        # podman 4.3 splits a JSON --health-cmd on spaces: pass the exec form as a quoted shell line.
        if isinstance(test, list):
            command = shlex.join(test[1:]) if test[0] == "CMD" else test[1]
        else:
            command = test
        argv += ["--health-cmd", command,
                 "--health-interval", check.get("interval", "30s"),
                 "--health-timeout", check.get("timeout", "30s"),
                 "--health-retries", str(check.get("retries", 3)),
                 "--health-start-period", check.get("start_period", "0s")]
    return argv + [service["image"]]


@dataclass
class ContainerNode:
    """A node started from its bundle with podman (same surface as a node process)."""

    node_id: str
    bundle_dir: Path
    engine: OperatorEngine
    log_path: Path

    @property
    def port(self) -> int:
        return int(read_env_file(self.bundle_dir / ".env")["NODERR_NODE_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def container(self) -> str:
        return container_name(compose_doc(self.bundle_dir))

    def ready(self) -> dict | None:
        try:
            resp = httpx.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def stop(self) -> None:
        """SIGTERM (the node drains), logs kept, then the container removed."""
        try:
            self.engine.stop(self.bundle_dir)
        finally:
            logs = self.engine.podman("logs", self.container)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text(logs.stdout + logs.stderr)
            self.engine.down(self.bundle_dir)


def start_container_node(bundle_dir: Path, node_id: str, *, engine_home: Path,
                         log_dir: Path, extra_env: dict[str, str] | None = None) -> ContainerNode:
    """Install the bundle's engine policy, pull the pinned image (verified), start the node."""
    engine = OperatorEngine(engine_home)
    engine.install(bundle_dir)
    if extra_env:
        with (bundle_dir / ".env").open("a") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in extra_env.items())
    image = compose_doc(bundle_dir)["services"]["node"]["image"]
    pulled = engine.pull(image)
    if pulled.returncode != 0:
        raise ImageError(f"podman refused the node image {image}:\n{pulled.stderr[-2000:]}")
    engine.up(bundle_dir)
    return ContainerNode(node_id, bundle_dir, engine, log_dir / f"{node_id}-container.log")
