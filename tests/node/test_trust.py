"""Beacon trust: signature, addressee, freshness and the persisted replay defence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node_service.trust import BeaconRejected, SequenceStore, verify_beacon
from noderr_protocol.signing import public_key_hex
from tests.support.node import iris_onnx, signed_beacon, signed_manifest


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def entry(key):
    from noderr_core.timeutil import utcnow
    from noderr_protocol.models import BeaconEntry

    sm = signed_manifest(key, name="iris", version=2, onnx_bytes=iris_onnx())
    return BeaconEntry(model_name="iris", version=2, rollout="active", signed_manifest=sm,
                       download_url="http://127.0.0.1:1/x",
                       download_url_expires_at=utcnow() + timedelta(minutes=5))


def raw(beacon) -> dict:
    return beacon.model_dump(mode="json")


def test_accepts_a_fresh_beacon_for_this_node(key, entry):
    b = signed_beacon(key, node_id="node_a", sequence=5, entries=[entry])
    got = verify_beacon(raw(b), public_key_hex(key), node_id="node_a", highest_sequence=5)
    assert got.beacon.sequence == 5
    assert got.beacon.models[0].signed_manifest.manifest.version == 2


def test_refuses_older_sequence(key, entry):
    b = signed_beacon(key, node_id="node_a", sequence=4, entries=[entry])
    with pytest.raises(BeaconRejected, match="older than the accepted sequence 5") as info:
        verify_beacon(raw(b), public_key_hex(key), node_id="node_a", highest_sequence=5)
    assert info.value.reason == "sequence"


def test_refuses_other_key_tampering_other_node_and_expiry(key, entry):
    pub = public_key_hex(key)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(BeaconRejected) as info:
        verify_beacon(raw(signed_beacon(other, node_id="node_a", sequence=1, entries=[entry])),
                      pub, node_id="node_a", highest_sequence=None)
    assert info.value.reason == "signature"

    tampered = raw(signed_beacon(key, node_id="node_a", sequence=1, entries=[entry]))
    tampered["beacon"]["sequence"] = 999
    with pytest.raises(BeaconRejected) as info:
        verify_beacon(tampered, pub, node_id="node_a", highest_sequence=None)
    assert info.value.reason == "signature"

    with pytest.raises(BeaconRejected) as info:
        verify_beacon(raw(signed_beacon(key, node_id="node_b", sequence=1, entries=[entry])),
                      pub, node_id="node_a", highest_sequence=None)
    assert info.value.reason == "node"

    stale = signed_beacon(key, node_id="node_a", sequence=9, entries=[entry],
                          issued_delta=-timedelta(hours=2))
    with pytest.raises(BeaconRejected) as info:
        verify_beacon(raw(stale), pub, node_id="node_a", highest_sequence=None)
    assert info.value.reason == "expired"

    junk = raw(signed_beacon(key, node_id="node_a", sequence=1, entries=[entry]))
    junk["beacon"]["surprise"] = 1
    with pytest.raises(BeaconRejected) as info:
        verify_beacon(junk, pub, node_id="node_a", highest_sequence=None)
    assert info.value.reason == "schema"


def test_manifest_signed_by_another_key_refuses_the_beacon(key, entry):
    other = Ed25519PrivateKey.generate()
    bad_entry = entry.model_copy(update={"signed_manifest": signed_manifest(
        other, name="iris", version=2, onnx_bytes=iris_onnx())})
    b = signed_beacon(key, node_id="node_a", sequence=1, entries=[bad_entry])
    with pytest.raises(BeaconRejected) as info:
        verify_beacon(raw(b), public_key_hex(key), node_id="node_a", highest_sequence=None)
    assert info.value.reason == "signature"


def test_sequence_store_survives_restart_and_refuses_corruption(tmp_path):
    store = SequenceStore(tmp_path / "beacon_state.json")
    assert store.load() is None
    store.save(41)
    assert SequenceStore(tmp_path / "beacon_state.json").load() == 41
    (tmp_path / "beacon_state.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="corrupt"):
        store.load()
