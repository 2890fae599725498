"""The model registry state machine: publish, promote, roll out, retire, roll back.

staged → canary (rollout %) → active → retired. One active and at most one canary per model name.
Every change bumps the global beacon sequence first: that UPDATE takes a row lock on PostgreSQL (and
SQLite's BEGIN IMMEDIATE serializes writers), so concurrent publishers and promotions queue up,
versions stay unique and monotonic per name (the unique (name, version) constraint is the backstop),
and a node can order beacons by sequence. Each change is recorded as a rollout event and in the
audit log, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.modelstore.packaging import sign_manifest
from noderr_core.tables.model_registry import (
    BeaconState,
    ModelRolloutEvent,
    ModelVersion,
    ModelVersionStatus,
)
from noderr_core.timeutil import utcnow
from noderr_protocol.models import SignedManifest

S = ModelVersionStatus


class RegistryError(ValueError):
    """A registry change that is not allowed; the message is shown to the person who asked."""


class ModelVersionNotFound(RegistryError):
    pass


@dataclass(frozen=True)
class PublishOutcome:
    model_version: ModelVersion
    created: bool  # False: these exact bytes were already published under this name
    renumbered: bool  # True: a concurrent publish took the proposed version; re-signed


def bump_beacon_sequence(session: Session) -> int:
    """Advance the beacon sequence (and lock it until commit). Returns the new sequence."""
    now = utcnow()
    session.execute(
        update(BeaconState).where(BeaconState.id == 1)
        .values(sequence=BeaconState.sequence + 1, updated_at=now)
    )
    sequence = session.scalar(select(BeaconState.sequence).where(BeaconState.id == 1))
    if sequence is None:
        raise RuntimeError("beacon_state row missing: run `noderr db upgrade`")
    return int(sequence)


def current_beacon_sequence(session: Session) -> int:
    return int(session.scalar(select(BeaconState.sequence).where(BeaconState.id == 1)) or 0)


def latest_version_number(session: Session, model_name: str) -> int:
    return int(
        session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == model_name))
        or 0
    )


def find_by_sha256(session: Session, model_name: str, sha256: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.name == model_name, ModelVersion.sha256 == sha256)
    )


def active_version(session: Session, model_name: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.name == model_name, ModelVersion.status == S.ACTIVE)
    )


def get_model_version(session: Session, model_name: str, version: int) -> ModelVersion:
    row = session.scalar(
        select(ModelVersion).where(ModelVersion.name == model_name, ModelVersion.version == version)
    )
    if row is None:
        raise ModelVersionNotFound(f"model {model_name} has no version {version}")
    return row


def list_model_versions(session: Session, model_name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())
    if model_name is not None:
        stmt = stmt.where(ModelVersion.name == model_name)
    return list(session.scalars(stmt))


def list_rollout_events(session: Session, model_name: str | None = None,
                        limit: int = 100) -> list[ModelRolloutEvent]:
    stmt = select(ModelRolloutEvent).order_by(ModelRolloutEvent.sequence.desc()).limit(limit)
    if model_name is not None:
        stmt = stmt.where(ModelRolloutEvent.model_name == model_name)
    return list(session.scalars(stmt))


def signed_manifest_of(row: ModelVersion) -> SignedManifest:
    return SignedManifest.model_validate(
        {"manifest": row.manifest, "signature": row.signature, "key_id": row.key_id}
    )


def _record(session: Session, *, sequence: int, row: ModelVersion, action: str,
            from_status: str | None, actor: Actor, **details) -> None:
    session.add(
        ModelRolloutEvent(
            sequence=sequence, model_name=row.name, version=row.version, action=action,
            from_status=from_status, to_status=row.status, rollout_percent=row.rollout_percent,
            actor_type=actor.type, actor_label=actor.label, details=details,
        )
    )
    audit(
        session, actor, f"model.{action}", "model_version", f"{row.name}:v{row.version}",
        from_status=from_status, to_status=row.status, rollout_percent=row.rollout_percent,
        beacon_sequence=sequence, **details,
    )


def _set_status(row: ModelVersion, status: str, rollout_percent: int) -> None:
    now = utcnow()
    row.status = str(status)
    row.rollout_percent = rollout_percent
    row.status_changed_at = now
    if status == S.ACTIVE:
        row.activated_at = now
    elif status == S.RETIRED:
        row.retired_at = now


def publish_model_version(
    session: Session,
    *,
    signed_manifest: SignedManifest,
    bucket: str,
    object_key: str,
    manifest_key: str,
    source: str,
    actor: Actor,
    signing_key: Ed25519PrivateKey,
) -> PublishOutcome:
    """Register verified, uploaded bytes as a new `staged` version (idempotent per sha256).

    The manifest carries the version proposed at packaging time; when a concurrent publish took
    it, the version is renumbered to the next free one and the manifest re-signed.
    """
    manifest = signed_manifest.manifest
    existing = find_by_sha256(session, manifest.name, manifest.sha256)
    if existing is not None:
        return PublishOutcome(existing, created=False, renumbered=False)
    sequence = bump_beacon_sequence(session)
    # Re-check under the lock: a concurrent publisher of the same bytes may have committed.
    existing = find_by_sha256(session, manifest.name, manifest.sha256)
    if existing is not None:
        return PublishOutcome(existing, created=False, renumbered=False)
    version = latest_version_number(session, manifest.name) + 1
    renumbered = version != manifest.version
    if renumbered:
        parent = manifest.parent_version
        if parent is None or parent >= version:
            parent = version - 1 or None
        signed_manifest = sign_manifest(
            manifest.model_copy(update={"version": version, "parent_version": parent}), signing_key
        )
        manifest = signed_manifest.manifest
    row = ModelVersion(
        name=manifest.name,
        version=manifest.version,
        sha256=manifest.sha256,
        size_bytes=manifest.size_bytes,
        bucket=bucket,
        object_key=object_key,
        manifest_key=manifest_key,
        manifest=manifest.model_dump(mode="json"),
        signature=signed_manifest.signature,
        key_id=signed_manifest.key_id,
        status=S.STAGED.value,
        rollout_percent=0,
        source=source[:512],
        parent_version=manifest.parent_version,
        metrics=dict(manifest.metrics),
        created_at=manifest.created_at,
        published_by=actor.label,
    )
    session.add(row)
    session.flush()
    _record(session, sequence=sequence, row=row, action="publish", from_status=None, actor=actor,
            sha256=manifest.sha256, size_bytes=manifest.size_bytes, source=source[:200])
    return PublishOutcome(row, created=True, renumbered=renumbered)


_PROMOTIONS: dict[str, set[str]] = {
    S.STAGED: {S.CANARY, S.ACTIVE, S.RETIRED},
    S.CANARY: {S.CANARY, S.ACTIVE, S.RETIRED, S.STAGED},
    S.ACTIVE: set(),
    S.RETIRED: set(),
}


def promote_model_version(
    session: Session,
    *,
    model_name: str,
    version: int,
    to_status: str,
    rollout_percent: int | None = None,
    actor: Actor,
) -> ModelVersion:
    """Move a version along staged → canary (rollout %) → active, or retire it.

    Promoting to active retires the previous active version. A canary needs a rollout percentage
    between 1 and 99 and there is at most one canary per model; changing the percentage of the
    current canary is a promotion to canary with a new percentage.
    """
    try:
        target = S(to_status)
    except ValueError:
        raise RegistryError(
            f"unknown status {to_status!r}: use one of {', '.join(s.value for s in S)}"
        ) from None
    sequence = bump_beacon_sequence(session)
    row = get_model_version(session, model_name, version)
    current = S(row.status)
    if target not in _PROMOTIONS[current]:
        if current == S.ACTIVE and target == S.RETIRED:
            raise RegistryError(
                f"{model_name} v{version} is the active version: promote another version or roll "
                "back instead of retiring it, so nodes always have a version to run"
            )
        if current == S.RETIRED:
            raise RegistryError(
                f"{model_name} v{version} is retired: use a rollback to make it active again"
            )
        raise RegistryError(f"{model_name} v{version} is {current}; it cannot become {target}")

    details: dict = {}
    if target == S.CANARY:
        if rollout_percent is None or not 1 <= rollout_percent <= 99:
            raise RegistryError(
                "a canary needs a rollout percentage between 1 and 99 (100 % is promoting to active)"
            )
        other = session.scalar(
            select(ModelVersion).where(
                ModelVersion.name == model_name, ModelVersion.status == S.CANARY,
                ModelVersion.version != version,
            )
        )
        if other is not None:
            raise RegistryError(
                f"{model_name} v{other.version} is already in canary at {other.rollout_percent} %: "
                "promote or retire it first"
            )
        percent = rollout_percent
    elif target == S.ACTIVE:
        if rollout_percent not in (None, 100):
            raise RegistryError("an active version serves 100 % of nodes; use canary for less")
        percent = 100
        previous = active_version(session, model_name)
        if previous is not None:
            _set_status(previous, S.RETIRED, 0)
            details["replaced_version"] = previous.version
    else:
        percent = 0
    _set_status(row, target, percent)
    session.flush()
    action = "rollout" if current == target == S.CANARY else "promote"
    _record(session, sequence=sequence, row=row, action=action, from_status=current, actor=actor,
            **details)
    return row


def rollback_model(
    session: Session, *, model_name: str, to_version: int | None = None, actor: Actor
) -> ModelVersion:
    """Make an older version active again (default: the most recent previously active one).

    The current active version and any canary are retired. Nodes see this as a beacon with a
    higher sequence that points at the older version, which they accept.
    """
    sequence = bump_beacon_sequence(session)
    current = active_version(session, model_name)
    if current is None:
        raise RegistryError(f"model {model_name} has no active version to roll back from")
    if to_version is None:
        target = session.scalar(
            select(ModelVersion)
            .where(
                ModelVersion.name == model_name,
                ModelVersion.status == S.RETIRED,
                ModelVersion.activated_at.is_not(None),
                ModelVersion.version < current.version,
            )
            .order_by(ModelVersion.version.desc())
            .limit(1)
        )
        if target is None:
            raise RegistryError(
                f"model {model_name} has no earlier version that was ever active: "
                "name the version to roll back to"
            )
    else:
        target = get_model_version(session, model_name, to_version)
        if target.version == current.version:
            raise RegistryError(f"{model_name} v{to_version} is already the active version")
    from_status = target.status
    _set_status(current, S.RETIRED, 0)
    for canary in session.scalars(
        select(ModelVersion).where(ModelVersion.name == model_name, ModelVersion.status == S.CANARY)
    ):
        _set_status(canary, S.RETIRED, 0)
    _set_status(target, S.ACTIVE, 100)
    session.flush()
    _record(session, sequence=sequence, row=target, action="rollback", from_status=from_status,
            actor=actor, rolled_back_from=current.version)
    return target


@dataclass(frozen=True)
class RolloutState:
    """Where one model stands: what nodes run now, and what is waiting or was rolled back."""

    model_name: str
    beacon_sequence: int
    active_version: int | None
    canary_version: int | None
    canary_percent: int
    staged_versions: list[int]
    rolled_back_versions: list[int]  # versions that were active and were rolled back from

    def summary(self) -> str:
        parts = []
        if self.active_version is not None:
            parts.append(f"v{self.active_version} active")
        if self.canary_version is not None:
            parts.append(f"v{self.canary_version} canary {self.canary_percent}%")
        if self.staged_versions:
            parts.append("staged " + ", ".join(f"v{v}" for v in self.staged_versions))
        if self.rolled_back_versions:
            parts.append("rolled back " + ", ".join(f"v{v}" for v in self.rolled_back_versions))
        return "; ".join(parts) or "nothing published"


def rollout_state(session: Session, model_name: str) -> RolloutState:
    versions = list_model_versions(session, model_name)
    active = next((v for v in versions if v.status == S.ACTIVE), None)
    canary = next((v for v in versions if v.status == S.CANARY), None)
    rolled_back = session.scalars(
        select(ModelRolloutEvent.details).where(
            ModelRolloutEvent.model_name == model_name, ModelRolloutEvent.action == "rollback")
    )
    return RolloutState(
        model_name=model_name,
        beacon_sequence=current_beacon_sequence(session),
        active_version=active.version if active else None,
        canary_version=canary.version if canary else None,
        canary_percent=canary.rollout_percent if canary else 0,
        staged_versions=sorted(v.version for v in versions if v.status == S.STAGED),
        rolled_back_versions=sorted({int(d["rolled_back_from"]) for d in rolled_back
                                     if d and "rolled_back_from" in d}),
    )
