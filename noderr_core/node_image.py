"""The node image operators run: where it is published, the digest bundles pin, and its signature.

Rules:
- A bundle names the node image only as `<registry>/<repository>@sha256:<digest>` — never a mutable
  tag. The digest is NODERR_NODE_IMAGE_DIGEST, or (local development) the one the last release step
  (`noderr images release`, noderr_local/images.py) recorded under the state dir.
- The release step signs the image with the platform's OpenPGP key ("simple signing", what the
  Debian builds of podman/skopeo support; they ship with sigstore disabled). Signatures are
  published in the object store under SIGNATURES_PREFIX and served by the API at
  `<public base URL>/v1/node-image/signatures/...` (containers' "lookaside" layout), so operators
  fetch them from the same place they already trust for models.
- Only the public key leaves the release host: the bundle carries it inside a containers
  `policy.json` requiring that signature for the node repository, plus a `registries.d` entry
  naming where the signatures are, so podman/skopeo refuse an unsigned or re-signed image at pull.
  In local development the key is the one `noderr images release` generated under the state dir;
  elsewhere NODERR_IMAGE_SIGNING_PUBLIC_KEY holds the ASCII-armored public key.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

from noderr_core.settings import Settings

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SIGNATURES_PREFIX = "node-image-signatures/"
SIGNATURES_ROUTE = "/v1/node-image/signatures"
# One lookaside path: "<repository>@sha256=<hex>/signature-<n>" (c/image's layout).
SIGNATURE_PATH_RE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"@sha256=(?P<hex>[0-9a-f]{64})/signature-(?P<index>[1-9][0-9]{0,2})$")
MAX_SIGNATURE_BYTES = 64 * 1024


class NodeImageNotReleased(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeImageRelease:
    registry: str
    repository: str
    digest: str

    def __post_init__(self) -> None:
        if not DIGEST_RE.match(self.digest):
            raise ValueError(f"node image digest must be sha256:<64 hex>, got {self.digest!r}")

    @property
    def scope(self) -> str:
        """The policy/registries.d scope: the repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        return f"{self.scope}@{self.digest}"


def release_record_path(settings: Settings) -> Path:
    return settings.state_dir / "releases" / "node-image.json"


def local_public_key_path(settings: Settings) -> Path:
    """Where the local release step leaves the signing key's armored public half."""
    return settings.state_dir / "image-signing" / "public-key.asc"


def record_release(settings: Settings, release: NodeImageRelease) -> Path:
    path = release_record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"registry": release.registry, "repository": release.repository,
                               "digest": release.digest}, indent=2) + "\n")
    tmp.replace(path)
    return path


def pinned_node_image(settings: Settings) -> NodeImageRelease | None:
    """The node image bundles pin: the configured digest, else the last local release, else None."""
    if settings.node_image_digest:
        return NodeImageRelease(settings.node_image_registry, settings.node_image_repository,
                                settings.node_image_digest.strip())
    path = release_record_path(settings)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if (doc.get("registry"), doc.get("repository")) != (settings.node_image_registry,
                                                        settings.node_image_repository):
        return None  # released to another registry than the one configured now
    return NodeImageRelease(doc["registry"], doc["repository"], doc["digest"])


def image_signing_public_key(settings: Settings) -> str | None:
    """The ASCII-armored OpenPGP public key node images are verified against (None: none yet)."""
    configured = settings.image_signing_public_key.strip()
    if configured:
        return configured + "\n"
    path = local_public_key_path(settings)
    if settings.is_local and path.exists():
        return path.read_text()
    return None


def signatures_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + SIGNATURES_ROUTE


def signature_object_key(path: str) -> str | None:
    """The object-store key of one lookaside signature path, or None if it is not one."""
    return SIGNATURES_PREFIX + path if SIGNATURE_PATH_RE.match(path) else None


# --- what the operator's engine needs to verify -------------------------------------------------

def containers_policy(scope: str, public_key_armored: str) -> dict:
    """containers-policy.json(5): the node repository only with our signature; anything else as
    the engine's stock Debian/Fedora policy treats it."""
    return {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                scope: [{
                    "type": "signedBy",
                    "keyType": "GPGKeys",
                    "keyData": base64.b64encode(public_key_armored.encode()).decode(),
                    "signedIdentity": {"type": "matchRepository"},
                }],
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }


def registries_d(scope: str, lookaside: str, staging: Path | None = None) -> str:
    """containers-registries.d(5): where signatures of the node repository are read (and, on the
    release host, staged for publishing)."""
    text = f"docker:\n  {scope}:\n    lookaside: {lookaside}\n"
    if staging is not None:
        text += f"    lookaside-staging: file://{staging}\n"
    return text
