"""The version beacon: for one node, which version of each model to run, signed.

The sequence and the versions are read in one statement (one snapshot on PostgreSQL), so a beacon
never pairs a sequence with a state older than it. Download URLs are presigned for the node
(short expiry); the beacon itself expires after NODERR_BEACON_TTL_SECONDS.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.keys import key_id, model_signing_key
from noderr_core.modelstore.registry import signed_manifest_of
from noderr_core.modelstore.rollout import assigned_version
from noderr_core.tables.model_registry import BeaconState, ModelVersion, ModelVersionStatus
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow
from noderr_protocol.models import BeaconDocument, BeaconEntry, SignedBeacon
from noderr_protocol.signing import public_key_hex, sign_document

_SERVED = (ModelVersionStatus.ACTIVE, ModelVersionStatus.CANARY)


def served_versions(session: Session) -> tuple[int, dict[str, list[ModelVersion]]]:
    """(beacon sequence, active + canary versions by model name), from one snapshot."""
    rows = session.execute(
        select(BeaconState.sequence, ModelVersion)
        .select_from(BeaconState)
        .outerjoin(ModelVersion, ModelVersion.status.in_(_SERVED))
        .where(BeaconState.id == 1)
        .order_by(ModelVersion.name, ModelVersion.version)
    ).all()
    if not rows:
        raise RuntimeError("beacon_state row missing: run `noderr db upgrade`")
    by_name: dict[str, list[ModelVersion]] = defaultdict(list)
    for _, version in rows:
        if version is not None:
            by_name[version.name].append(version)
    return int(rows[0][0]), dict(by_name)


def build_signed_beacon(
    session: Session,
    node_id: str,
    settings: Settings,
    s3_client,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    now: datetime | None = None,
) -> SignedBeacon:
    """The signed beacon for `node_id`; `s3_client` presigns URLs for the endpoint nodes reach."""
    key = signing_key or model_signing_key(settings)
    now = now or utcnow()
    sequence, by_name = served_versions(session)
    url_expires_at = now + timedelta(seconds=settings.presign_expiry_seconds)
    entries = []
    for name in sorted(by_name):
        chosen = assigned_version(node_id, by_name[name])
        if chosen is None:
            continue
        url = s3_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": chosen.bucket, "Key": chosen.object_key},
            ExpiresIn=settings.presign_expiry_seconds,
        )
        entries.append(
            BeaconEntry(
                model_name=name,
                version=chosen.version,
                rollout=str(chosen.status),
                signed_manifest=signed_manifest_of(chosen),
                download_url=url,
                download_url_expires_at=url_expires_at,
            )
        )
    document = BeaconDocument(
        node_id=node_id,
        sequence=sequence,
        issued_at=now,
        expires_at=now + timedelta(seconds=settings.beacon_ttl_seconds),
        models=entries,
    )
    return SignedBeacon(
        beacon=document,
        signature=sign_document(document, key),
        key_id=key_id(public_key_hex(key)),
    )
