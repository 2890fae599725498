"""What the node trusts: beacons and manifests verified with `noderr_protocol.verify` under the
Noderr model key from the bundle, and the highest beacon sequence ever accepted (persisted, so a
restart cannot be fed an older, replayed beacon).

This module maps the protocol's verification errors to short reasons used in metrics and logs.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from noderr_protocol import verify
from noderr_protocol.models import ModelManifest, SignedBeacon


class BeaconRejected(ValueError):
    """A beacon the node must not act on; the message says why (it is logged and counted)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # metrics label: signature, sequence, expired, node, schema, manifest


class ManifestRejected(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


_REASONS: list[tuple[type[Exception], str]] = [
    (verify.BadSignatureError, "signature"),
    (verify.MalformedDocumentError, "schema"),
    (verify.BeaconReplayError, "sequence"),
    (verify.BeaconExpiredError, "expired"),
    (verify.BeaconNotForThisNodeError, "node"),
]


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "manifest"


def verify_signed_manifest(raw: dict[str, Any], public_key_hex: str) -> ModelManifest:
    try:
        return verify.verify_signed_manifest(raw, public_key_hex)
    except verify.VerificationError as exc:
        raise ManifestRejected(_reason(exc), str(exc)) from exc


def verify_beacon(raw: dict[str, Any], public_key_hex: str, *, node_id: str,
                  highest_sequence: int | None, now: datetime | None = None) -> SignedBeacon:
    """The parsed signed beacon if the node may act on it, else BeaconRejected."""
    try:
        signed = SignedBeacon.model_validate(raw)
    except ValueError as exc:
        raise BeaconRejected("schema", f"beacon does not match the protocol schema: {exc}") from exc
    try:
        verify.verify_signed_beacon(signed, public_key_hex, last_sequence=highest_sequence,
                                    now=now or datetime.now(UTC), node_id=node_id)
    except verify.VerificationError as exc:
        raise BeaconRejected(_reason(exc), f"beacon refused: {exc}") from exc
    return signed


class SequenceStore:
    """The highest beacon sequence ever accepted, in `<cache>/beacon_state.json` (atomic writes)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["highest_sequence"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            # A corrupt state file must not silently reset the replay defence.
            raise RuntimeError(
                f"{self.path} is corrupt ({exc}); delete it only if you trust the control plane"
            ) from exc

    def save(self, sequence: int) -> None:
        write_json_atomic(self.path, {"highest_sequence": sequence})


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
