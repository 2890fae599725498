"""Node-side verification of manifests, beacons and downloaded model bytes.

A node trusts only the Noderr model public key from its config bundle (NODERR_MODEL_PUBLIC_KEY).
It accepts a beacon when its signature verifies, it is addressed to this node, it has not expired,
and its sequence is not older than the newest one the node has already accepted (a replayed old
beacon — a rollback or freeze attack, as defended against by TUF's timestamp role — is refused; a
deliberate rollback by the platform arrives as a *newer* sequence pointing at an older model). Every
entry's manifest must verify on its own, and downloaded bytes must match the manifest's size and
sha256 before a node loads them.

Depends only on pydantic + cryptography (noderr_protocol), so the node container stays small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from noderr_protocol.models import BeaconDocument, ModelManifest, SignedBeacon, SignedManifest
from noderr_protocol.signing import SignatureError, load_public_key, verify_document

# Tolerated clock difference between control plane and node when checking issued_at.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


class VerificationError(ValueError):
    """A document or a download failed verification; the message says which check and why."""


class BadSignatureError(VerificationError, SignatureError):
    """Signature does not verify, or the document was signed by a key the node does not trust."""


class MalformedDocumentError(VerificationError):
    """The document does not parse as the protocol schema (unknown or missing fields)."""


class BeaconReplayError(VerificationError):
    """The beacon's sequence is older than one the node already accepted."""


class BeaconExpiredError(VerificationError):
    """The beacon is past its expiry (or claims to be issued in the future)."""


class BeaconNotForThisNodeError(VerificationError):
    """The beacon was issued to another node."""


class ModelIntegrityError(VerificationError):
    """Downloaded model bytes do not match the manifest's size or sha256."""


def _key_id(public_key_hex: str) -> str:
    return public_key_hex.strip().lower()[:16]


def _parse(model: type, document: Any, what: str):
    if isinstance(document, model):
        return document
    try:
        if isinstance(document, (bytes, str)):
            return model.model_validate_json(document)
        return model.model_validate(document)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{what} does not match protocol schema: {exc}") from exc


def verify_signed_manifest(signed: SignedManifest | dict | bytes | str,
                           public_key_hex: str) -> ModelManifest:
    """Return the manifest when its Ed25519 signature verifies under the trusted key."""
    signed = _parse(SignedManifest, signed, "signed manifest")
    if signed.key_id != _key_id(public_key_hex):
        raise BadSignatureError(
            f"manifest {signed.manifest.name} v{signed.manifest.version} was signed by key "
            f"{signed.key_id}, but this node trusts {_key_id(public_key_hex)} "
            "(NODERR_MODEL_PUBLIC_KEY)"
        )
    try:
        verify_document(signed.manifest, signed.signature, load_public_key(public_key_hex))
    except SignatureError as exc:
        raise BadSignatureError(
            f"manifest {signed.manifest.name} v{signed.manifest.version}: {exc}"
        ) from exc
    return signed.manifest


def verify_signed_beacon(
    signed: SignedBeacon | dict | bytes | str,
    public_key_hex: str,
    *,
    last_sequence: int | None,
    now: datetime,
    node_id: str | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> BeaconDocument:
    """Return the beacon document when it is authentic, fresh, for this node, and not a replay.

    `last_sequence` is the highest sequence this node has accepted before (None on first start).
    An equal sequence is accepted: it is the same beacon state re-issued (fresh download URLs).
    """
    signed = _parse(SignedBeacon, signed, "signed beacon")
    beacon = signed.beacon
    if signed.key_id != _key_id(public_key_hex):
        raise BadSignatureError(
            f"beacon signed by key {signed.key_id}, but this node trusts "
            f"{_key_id(public_key_hex)} (NODERR_MODEL_PUBLIC_KEY)"
        )
    try:
        verify_document(beacon, signed.signature, load_public_key(public_key_hex))
    except SignatureError as exc:
        raise BadSignatureError(f"beacon sequence {beacon.sequence}: {exc}") from exc
    if node_id is not None and beacon.node_id != node_id:
        raise BeaconNotForThisNodeError(
            f"beacon was issued to node {beacon.node_id}, not to this node ({node_id})"
        )
    if last_sequence is not None and beacon.sequence < last_sequence:
        raise BeaconReplayError(
            f"beacon sequence {beacon.sequence} is older than the accepted sequence "
            f"{last_sequence}: refusing a replayed beacon"
        )
    if now >= beacon.expires_at:
        raise BeaconExpiredError(
            f"beacon sequence {beacon.sequence} expired at {beacon.expires_at.isoformat()} "
            f"(now {now.isoformat()}): refusing a stale beacon"
        )
    if beacon.issued_at - clock_skew > now:
        raise BeaconExpiredError(
            f"beacon issued at {beacon.issued_at.isoformat()} is in the future (now "
            f"{now.isoformat()}): check the node's clock"
        )
    seen: set[str] = set()
    for entry in beacon.models:
        manifest = verify_signed_manifest(entry.signed_manifest, public_key_hex)
        if (manifest.name, manifest.version) != (entry.model_name, entry.version):
            raise VerificationError(
                f"beacon entry {entry.model_name} v{entry.version} carries the manifest of "
                f"{manifest.name} v{manifest.version}"
            )
        if entry.model_name in seen:
            raise VerificationError(f"beacon lists model {entry.model_name} twice")
        seen.add(entry.model_name)
    return beacon


def _check(manifest: ModelManifest, size: int, digest: str, where: str) -> None:
    if size != manifest.size_bytes:
        raise ModelIntegrityError(
            f"{where}: {size} bytes, but manifest {manifest.name} v{manifest.version} says "
            f"{manifest.size_bytes}"
        )
    if digest != manifest.sha256:
        raise ModelIntegrityError(
            f"{where}: sha256 {digest}, but manifest {manifest.name} v{manifest.version} says "
            f"{manifest.sha256}"
        )


def verify_model_bytes(manifest: ModelManifest, data: bytes) -> None:
    """Raise ModelIntegrityError unless `data` is exactly the model the manifest describes."""
    _check(manifest, len(data), hashlib.sha256(data).hexdigest(), "downloaded model")


def verify_model_chunks(manifest: ModelManifest, chunks: Iterable[bytes]) -> None:
    """Streaming variant of verify_model_bytes (e.g. over an HTTP response)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    _check(manifest, size, digest.hexdigest(), "downloaded model")


def verify_model_file(manifest: ModelManifest, path: str | Path, chunk_size: int = 1 << 20) -> None:
    """Hash a file on disk (streaming) and compare it with the manifest."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    _check(manifest, size, digest.hexdigest(), str(path))
