"""Node-side verification: tampered manifests and beacons, replays, expiry, wrong node, bad bytes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from noderr_core.modelstore.packaging import build_manifest, sign_manifest
from noderr_core.timeutil import utcnow
from noderr_protocol.models import BeaconDocument, BeaconEntry, SignedBeacon
from noderr_protocol.signing import public_key_hex, sign_document
from noderr_protocol.verify import (
    BadSignatureError,
    BeaconExpiredError,
    BeaconNotForThisNodeError,
    BeaconReplayError,
    MalformedDocumentError,
    ModelIntegrityError,
    verify_model_bytes,
    verify_signed_beacon,
    verify_signed_manifest,
)
from tests.support.models import reference_onnx

KEY = Ed25519PrivateKey.generate()
PUB = public_key_hex(KEY)


def signed_manifest(version=1):
    manifest = build_manifest(name="iris-classifier", version=version, onnx_bytes=reference_onnx(),
                              metrics={"holdout_accuracy": 0.93}, parent_version=None)
    return sign_manifest(manifest, KEY)


def signed_beacon(*, sequence=5, node_id="node_a", now=None, key=KEY, ttl=3600):
    now = now or utcnow()
    sm = signed_manifest()
    doc = BeaconDocument(
        node_id=node_id, sequence=sequence, issued_at=now, expires_at=now + timedelta(seconds=ttl),
        models=[BeaconEntry(model_name="iris-classifier", version=1, rollout="active",
                            signed_manifest=sm, download_url="http://127.0.0.1:1/x",
                            download_url_expires_at=now + timedelta(seconds=300))],
    )
    return SignedBeacon(beacon=doc, signature=sign_document(doc, key), key_id=public_key_hex(key)[:16])


def test_manifest_round_trips_through_json_and_verifies():
    sm = signed_manifest()
    manifest = verify_signed_manifest(sm.model_dump_json(), PUB)
    assert manifest.sha256 == sm.manifest.sha256
    verify_model_bytes(manifest, reference_onnx())


@pytest.mark.parametrize("field,value", [("sha256", "0" * 64), ("version", 2), ("size_bytes", 1)])
def test_tampered_manifest_is_rejected(field, value):
    sm = signed_manifest()
    tampered = sm.model_copy(update={"manifest": sm.manifest.model_copy(update={field: value})})
    with pytest.raises(BadSignatureError, match="signature does not verify"):
        verify_signed_manifest(tampered, PUB)


def test_manifest_signed_by_another_key_is_rejected():
    other = Ed25519PrivateKey.generate()
    sm = sign_manifest(signed_manifest().manifest, other)
    with pytest.raises(BadSignatureError, match="NODERR_MODEL_PUBLIC_KEY"):
        verify_signed_manifest(sm, PUB)
    # Even when the attacker copies our key id, the signature itself fails.
    forged = sm.model_copy(update={"key_id": PUB[:16]})
    with pytest.raises(BadSignatureError):
        verify_signed_manifest(forged, PUB)


def test_unknown_field_in_manifest_is_rejected():
    data = signed_manifest().model_dump(mode="json")
    data["manifest"]["backdoor"] = True
    with pytest.raises(MalformedDocumentError, match="backdoor"):
        verify_signed_manifest(data, PUB)


def test_beacon_verifies_from_json():
    now = utcnow()
    beacon = verify_signed_beacon(signed_beacon(now=now).model_dump_json(), PUB, last_sequence=5,
                                  now=now, node_id="node_a")
    assert beacon.sequence == 5 and beacon.models[0].version == 1


def test_tampered_beacon_is_rejected():
    now = utcnow()
    sb = signed_beacon(now=now)
    data = sb.model_dump(mode="json")
    data["beacon"]["models"][0]["download_url"] = "http://evil.example/model.onnx"
    with pytest.raises(BadSignatureError):
        verify_signed_beacon(data, PUB, last_sequence=None, now=now)
    data = sb.model_dump(mode="json")
    data["beacon"]["sequence"] = 99
    with pytest.raises(BadSignatureError):
        verify_signed_beacon(data, PUB, last_sequence=None, now=now)


def test_beacon_entry_with_tampered_manifest_is_rejected_even_if_beacon_resigned_by_attacker():
    attacker = Ed25519PrivateKey.generate()
    now = utcnow()
    sb = signed_beacon(now=now, key=attacker)
    forged = sb.model_copy(update={"key_id": PUB[:16]})
    with pytest.raises(BadSignatureError):
        verify_signed_beacon(forged, PUB, last_sequence=None, now=now)


def test_replayed_older_beacon_is_refused_but_same_sequence_is_accepted():
    now = utcnow()
    with pytest.raises(BeaconReplayError, match="older than the accepted sequence 6"):
        verify_signed_beacon(signed_beacon(sequence=5, now=now), PUB, last_sequence=6, now=now)
    assert verify_signed_beacon(signed_beacon(sequence=6, now=now), PUB, last_sequence=6,
                                now=now).sequence == 6


def test_expired_beacon_is_refused():
    issued = utcnow() - timedelta(hours=2)
    with pytest.raises(BeaconExpiredError, match="expired"):
        verify_signed_beacon(signed_beacon(now=issued, ttl=3600), PUB, last_sequence=None,
                             now=utcnow())


def test_beacon_for_another_node_is_refused():
    now = utcnow()
    with pytest.raises(BeaconNotForThisNodeError, match="node_a"):
        verify_signed_beacon(signed_beacon(now=now), PUB, last_sequence=None, now=now,
                             node_id="node_b")


def test_downloaded_bytes_that_differ_from_manifest_are_refused():
    manifest = signed_manifest().manifest
    data = bytearray(reference_onnx())
    data[-1] ^= 0xFF
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_model_bytes(manifest, bytes(data))
    with pytest.raises(ModelIntegrityError, match="bytes"):
        verify_model_bytes(manifest, reference_onnx()[:-1])
