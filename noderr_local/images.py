"""Building, publishing and signing the platform's container images with a daemonless engine.

`noderr images build` (`make images`) builds the node, API and pipelines images with podman (docker
where podman is absent and a docker daemon answers); `noderr images release` builds the node image,
pushes it to NODERR_NODE_IMAGE_REGISTRY, signs it (OpenPGP simple signing with the platform's key,
noderr_core/node_image.py), publishes the signature to the object store (the API serves it to
operators' engines) and records the pushed digest for bundles. Rules:
- Every engine call gets CONTAINERS_CONF=docker/containers.conf (runc, explicit ulimits, host
  network) unless the caller set its own.
- The Dockerfiles keep their production FROM (ARG BASE_IMAGE's default). Only when that image is
  not in local storage is the mmdebstrap stand-in made (scripts/base-image.sh, cached) and passed.
- pip inside a build sees the host's CA bundle, mounted read-only (outbound HTTPS may be
  intercepted); nothing else of the host goes in.
- Layers are cached: a rebuild with unchanged requirements only re-copies the code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from noderr_core.node_image import (
    NodeImageRelease, local_public_key_path, record_release, registries_d, signature_object_key,
    signatures_url,
)
from noderr_core.settings import PROJECT_ROOT, Settings

CONTAINERS_CONF = PROJECT_ROOT / "docker" / "containers.conf"
PRODUCTION_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/noderr-base:bookworm-py3.11"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str
    tag: str
    target: str | None = None


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("noderr")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def image_specs() -> dict[str, ImageSpec]:
    v = version()
    return {
        "node": ImageSpec("node", "node_service/Dockerfile", f"localhost/noderr/node:{v}", "cpu"),
        "node-gpu": ImageSpec("node-gpu", "node_service/Dockerfile",
                              f"localhost/noderr/node-gpu:{v}", "gpu"),
        "api": ImageSpec("api", "docker/api.Dockerfile", f"localhost/noderr/api:{v}", "api"),
        "pipelines": ImageSpec("pipelines", "docker/pipelines.Dockerfile",
                               f"localhost/noderr/pipelines:{v}", "pipelines"),
    }


# What `make images` builds (the GPU variant downloads the CUDA libraries: `--only node-gpu`).
DEFAULT_IMAGES = ("node", "api", "pipelines")


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def container_engine() -> str:
    """podman when installed; else docker when its daemon answers."""
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(
            ["docker", "info"], capture_output=True, timeout=20).returncode == 0:
        return "docker"
    raise ImageError("no container engine: install podman (`bash scripts/system-deps.sh`)")


def run_engine(args: list[str], *, timeout: float = 1800, check: bool = True,
               env: dict[str, str] | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env or engine_env(), capture_output=capture, text=True,
                            timeout=timeout, cwd=PROJECT_ROOT)
    if check and result.returncode != 0:
        output = ((result.stdout or "") + (result.stderr or ""))[-4000:]
        raise ImageError(f"`{' '.join(args[:3])} …` failed with {result.returncode}:\n{output}")
    return result


def image_exists(engine: str, image: str) -> bool:
    if engine == "podman":
        return run_engine([engine, "image", "exists", image], check=False).returncode == 0
    return run_engine([engine, "image", "inspect", image], check=False).returncode == 0


def base_image(engine: str) -> str | None:
    """The BASE_IMAGE build argument: None when the production base is available locally."""
    override = os.environ.get("NODERR_BASE_IMAGE")
    if override:
        return override
    if image_exists(engine, PRODUCTION_BASE):
        return None
    env = engine_env() | {"NODERR_BASE_IMAGE": LOCAL_BASE, "NODERR_CONTAINER_ENGINE": engine}
    run_engine(["bash", str(PROJECT_ROOT / "scripts" / "base-image.sh")], env=env, timeout=1200)
    return LOCAL_BASE


def build_image(spec: ImageSpec, *, engine: str | None = None) -> str:
    """Builds one image (cached layers) and returns its local tag."""
    engine = engine or container_engine()
    args = [engine, "build", "--file", spec.dockerfile, "--tag", spec.tag]
    if spec.target:
        args += ["--target", spec.target]
    base = base_image(engine)
    if base:
        args += ["--build-arg", f"BASE_IMAGE={base}"]
    if engine == "podman":
        args += ["--layers", "--network", "host"]
        if HOST_CA_BUNDLE.exists():
            args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    run_engine(args + ["."], timeout=3600)
    return spec.tag


def image_size_bytes(engine: str, image: str) -> int:
    out = run_engine([engine, "image", "inspect", "--format", "{{.Size}}", image]).stdout
    return int(out.strip())


# --- signing key (OpenPGP "simple signing") ----------------------------------------------------

# gpg-agent's socket lives in the GnuPG home, and a Unix socket path is limited to ~107 bytes: a
# home under a deep state directory (a test's tmp dir) fails with "No agent running". Such homes
# are reached through a short, stable link in the temp directory instead.
_MAX_GNUPG_HOME = 60


def gnupg_env(home: Path) -> dict[str, str]:
    if len(str(home)) <= _MAX_GNUPG_HOME:
        return {"GNUPGHOME": str(home)}
    import hashlib

    link = Path(tempfile.gettempdir()) / f"noderr-gpg-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
    if not (link.is_symlink() and link.resolve() == home.resolve()):
        link.unlink(missing_ok=True)
        link.symlink_to(home.resolve(), target_is_directory=True)
    return {"GNUPGHOME": str(link)}


@dataclass(frozen=True)
class ImageSigningKey:
    gnupg_home: Path
    fingerprint: str

    def env(self) -> dict[str, str]:
        return gnupg_env(self.gnupg_home)

    def public_key(self) -> str:
        result = subprocess.run(["gpg", "--batch", "--armor", "--export", self.fingerprint],
                                env=engine_env() | self.env(), capture_output=True, text=True,
                                timeout=30, check=True)
        return result.stdout


def _secret_key_fingerprints(gnupg_home: Path) -> list[str]:
    result = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"],
                            env=engine_env() | gnupg_env(gnupg_home),
                            capture_output=True, text=True, timeout=30)
    return [line.split(":")[9] for line in result.stdout.splitlines() if line.startswith("fpr:")]


def generate_signing_key(directory: Path, *, name: str = "Noderr node images") -> ImageSigningKey:
    """A new RSA-3072 signing key in its own GnuPG home (no passphrase: protect the directory;
    production keeps its key on the release host, see docs/DEPLOYMENT.md)."""
    if not shutil.which("gpg"):
        raise ImageError("gpg is not installed: run `bash scripts/system-deps.sh`")
    home = directory / "gnupg"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-generate-key", f"{name} <node-images@noderr.invalid>", "rsa3072",
                    "sign", "never"],
                   env=engine_env() | gnupg_env(home), capture_output=True, timeout=300,
                   check=True)
    return ImageSigningKey(home, _secret_key_fingerprints(home)[-1])


def local_signing_key(settings: Settings) -> ImageSigningKey:
    """The local development key under the state dir (generated on first use); its public half is
    left where the API's bundles pick it up."""
    directory = settings.state_dir / "image-signing"
    existing = _secret_key_fingerprints(directory / "gnupg") if (directory / "gnupg").exists() else []
    key = ImageSigningKey(directory / "gnupg", existing[0]) if existing else generate_signing_key(
        directory)
    public = local_public_key_path(settings)
    if not public.exists():
        public.write_text(key.public_key())
    return key


# --- publishing ----------------------------------------------------------------------------------

def write_registries_d(directory: Path, scope: str, lookaside: str,
                       staging: Path | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "noderr-node.yaml").write_text(registries_d(scope, lookaside, staging))
    return directory


def push_image(local_tag: str, destination: str, *, signing: ImageSigningKey | None,
               tls_verify: bool, registries_dir: Path | None = None) -> str:
    """Copies a local image to `destination` (registry/repo:tag) with skopeo, signing it when a key
    is given (the signature lands in the registries.d lookaside staging directory); returns the
    pushed manifest digest."""
    if not shutil.which("skopeo"):
        raise ImageError("skopeo is not installed: run `bash scripts/system-deps.sh`")
    with tempfile.TemporaryDirectory() as tmp:
        digest_file = Path(tmp) / "digest"
        args = ["skopeo", "copy", "--quiet", "--digestfile", str(digest_file),
                f"--dest-tls-verify={'true' if tls_verify else 'false'}"]
        if registries_dir is not None:
            args += ["--registries.d", str(registries_dir)]
        env = engine_env()
        if signing is not None:
            args += ["--sign-by", signing.fingerprint]
            env |= signing.env()
        run_engine(args + [f"containers-storage:{local_tag}", f"docker://{destination}"], env=env)
        return digest_file.read_text().strip()


def publish_signatures(s3_client, bucket: str, staging: Path) -> list[str]:
    """Uploads staged lookaside signatures to the object store, where the API serves them."""
    keys = []
    for path in sorted(p for p in staging.rglob("signature-*") if p.is_file()):
        relative = path.relative_to(staging).as_posix()
        key = signature_object_key(relative)
        if key is None:
            raise ImageError(f"unexpected file in the signature staging area: {relative}")
        s3_client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                             ContentType="application/octet-stream")
        keys.append(key)
    return keys


@dataclass(frozen=True)
class SignedPush:
    digest: str
    staging: Path  # the lookaside files to publish


def push_signed(local_tag: str, scope: str, tag: str, *, signing: ImageSigningKey,
                lookaside: str, workdir: Path, tls_verify: bool) -> SignedPush:
    staging = workdir / "signatures"
    registries_dir = write_registries_d(workdir / "registries.d", scope, lookaside, staging)
    digest = push_image(local_tag, f"{scope}:{tag}", signing=signing, tls_verify=tls_verify,
                        registries_dir=registries_dir)
    return SignedPush(digest, staging)


def release_node_image(settings: Settings, *, signing: ImageSigningKey | None = None,
                       build: bool = True, tls_verify: bool | None = None) -> NodeImageRelease:
    """Build → push → sign → publish the signature → record: the node image bundles pin now."""
    from noderr_core.storage.s3 import ensure_bucket, make_s3_client

    spec = image_specs()["node"]
    if build:
        build_image(spec)
    registry, repository = settings.node_image_registry, settings.node_image_repository
    scope = f"{registry}/{repository}"
    if tls_verify is None:
        tls_verify = registry.split(":")[0] not in ("127.0.0.1", "localhost")
    if signing is None:
        if not settings.is_local:
            raise ImageError(f"NODERR_ENV={settings.env}: sign with the platform's key "
                             "(`noderr images release --key-id <fingerprint> [--gnupg-home DIR]`); "
                             "a key is generated only for local development")
        signing = local_signing_key(settings)
    with tempfile.TemporaryDirectory() as tmp:
        pushed = push_signed(spec.tag, scope, version(), signing=signing,
                             lookaside=signatures_url(settings), workdir=Path(tmp),
                             tls_verify=tls_verify)
        s3 = make_s3_client(settings)
        ensure_bucket(s3, settings.model_bucket, settings.s3_region)
        if not publish_signatures(s3, settings.model_bucket, pushed.staging):
            raise ImageError("skopeo pushed the image but wrote no signature")
    release = NodeImageRelease(registry, repository, pushed.digest)
    record_release(settings, release)
    return release


def build_images(names: tuple[str, ...] = DEFAULT_IMAGES) -> list[tuple[str, str, float, int]]:
    """Builds the named images; returns (name, tag, seconds, size bytes) per image."""
    engine = container_engine()
    specs = image_specs()
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ImageError(f"unknown image(s) {unknown}: choose from {sorted(specs)}")
    built = []
    for name in names:
        started = time.monotonic()
        tag = build_image(specs[name], engine=engine)
        built.append((name, tag, time.monotonic() - started, image_size_bytes(engine, tag)))
    return built
