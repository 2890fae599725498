"""The model-signing key (Ed25519) that signs manifests and beacons.

Outside local, NODERR_MODEL_SIGNING_KEY must be set (Settings refuses to start otherwise). In local,
a key is generated once under the state dir, so restarts keep verifying old manifests.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from noderr_core.settings import Settings
from noderr_protocol.signing import load_private_key, public_key_hex


class SigningKeyMissing(RuntimeError):
    pass


def model_signing_key(settings: Settings) -> Ed25519PrivateKey:
    configured = settings.model_signing_key.get_secret_value().strip()
    if configured:
        return load_private_key(configured)
    if not settings.is_local:
        raise SigningKeyMissing(
            "NODERR_MODEL_SIGNING_KEY is not set: generate one with "
            "`python -c \"import secrets; print(secrets.token_hex(32))\"` and keep it secret"
        )
    path = settings.state_dir / "model-signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(os.urandom(32).hex())
    return load_private_key(path.read_text().strip())


def model_public_key_hex(settings: Settings) -> str:
    return public_key_hex(model_signing_key(settings))


def key_id(public_hex: str) -> str:
    return public_hex[:16]
