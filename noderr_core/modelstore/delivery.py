"""Model delivery steps shared by the Dagster assets and the CLI: package → store → publish.

1. `package_model`: manifest + Ed25519 signature. Identical bytes already published under the
   name reuse that version's signed manifest (re-materializing changes nothing).
2. `store_model_bytes`: content-addressed upload, read back and verified.
3. `publish_stored_model`: the `staged` registry row and the manifest object next to the bytes,
   in one transaction (the manifest object is written before commit; a failure rolls back).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from noderr_core.audit import Actor
from noderr_core.modelstore.objects import (
    UploadOutcome,
    manifest_matches,
    put_manifest_object,
    upload_model_object,
)
from noderr_core.modelstore.packaging import build_manifest, sha256_hex, sign_manifest
from noderr_core.modelstore.registry import (
    PublishOutcome,
    active_version,
    find_by_sha256,
    latest_version_number,
    publish_model_version,
    signed_manifest_of,
)
from noderr_protocol.models import SignedManifest


@dataclass
class PackagedModel:
    signed_manifest: SignedManifest
    onnx_bytes: bytes
    source: str
    reused: bool  # True: these bytes were already published; this is their existing manifest


def package_model(
    session: Session,
    *,
    name: str,
    onnx_bytes: bytes,
    source: str,
    metrics: dict[str, float],
    signing_key: Ed25519PrivateKey,
    description: str = "",
) -> PackagedModel:
    existing = find_by_sha256(session, name, sha256_hex(onnx_bytes))
    if existing is not None:
        return PackagedModel(signed_manifest_of(existing), onnx_bytes, source, reused=True)
    latest = latest_version_number(session, name)
    active = active_version(session, name)
    parent = active.version if active is not None else (latest or None)
    manifest = build_manifest(
        name=name, version=latest + 1, onnx_bytes=onnx_bytes, metrics=metrics,
        parent_version=parent, description=description,
    )
    return PackagedModel(sign_manifest(manifest, signing_key), onnx_bytes, source, reused=False)


def store_model_bytes(client, bucket: str, package: PackagedModel) -> UploadOutcome:
    manifest = package.signed_manifest.manifest
    if not manifest_matches(manifest, package.onnx_bytes):
        raise ValueError(
            f"package of {manifest.name} v{manifest.version} does not match its manifest "
            "(size/sha256): re-run packaging"
        )
    return upload_model_object(client, bucket, manifest.name, package.onnx_bytes)


def publish_stored_model(
    session: Session,
    client,
    *,
    bucket: str,
    signed_manifest: SignedManifest,
    object_key: str,
    source: str,
    actor: Actor,
    signing_key: Ed25519PrivateKey,
) -> PublishOutcome:
    from noderr_core.modelstore.objects import manifest_object_key

    manifest = signed_manifest.manifest
    outcome = publish_model_version(
        session,
        signed_manifest=signed_manifest,
        bucket=bucket,
        object_key=object_key,
        manifest_key=manifest_object_key(manifest.name, manifest.sha256),
        source=source,
        actor=actor,
        signing_key=signing_key,
    )
    if outcome.created:
        put_manifest_object(client, bucket, signed_manifest_of(outcome.model_version))
    return outcome
