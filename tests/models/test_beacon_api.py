"""GET /v1/models/beacon through the real API (uvicorn) with SeaweedFS and SQLite/PostgreSQL."""

from __future__ import annotations

import secrets

import httpx

from noderr_core.audit import Actor
from noderr_core.modelstore import in_canary, promote_model_version, rollback_model
from noderr_core.storage.s3 import make_s3_client
from noderr_core.timeutil import utcnow
from noderr_protocol.signing import load_private_key, public_key_hex
from noderr_protocol.verify import BeaconReplayError, verify_model_bytes, verify_signed_beacon
from tests.support.models import onnx_variant, publish_bytes

ADMIN = Actor("admin", 1, "admin@noderr.local")


def test_node_gets_a_signed_beacon_and_downloads_verified_bytes(
    db_url, session_factory, node_factory, s3_settings, s3_server, api_server_factory
):
    key_hex = secrets.token_hex(32)
    key = load_private_key(key_hex)
    pub = public_key_hex(key)
    client = make_s3_client(s3_settings)
    bucket = s3_settings.model_bucket
    v1_bytes, v2_bytes = onnx_variant("v1"), onnx_variant("v2")
    with session_factory() as s:
        publish_bytes(s, client, bucket, key, data=v1_bytes)
        publish_bytes(s, client, bucket, key, data=v2_bytes)
        promote_model_version(s, model_name="iris-classifier", version=1, to_status="active", actor=ADMIN)
        promote_model_version(s, model_name="iris-classifier", version=2, to_status="canary",
                              rollout_percent=50, actor=ADMIN)
        s.commit()
    nodes = [node_factory() for _ in range(6)]
    server = api_server_factory(db_url, env={
        **s3_server.env(), "NODERR_MODEL_BUCKET": bucket, "NODERR_MODEL_SIGNING_KEY": key_hex,
        "NODERR_PRESIGN_EXPIRY_SECONDS": "120",
    })
    with server.client() as http:
        assert http.get("/v1/models/beacon").status_code == 401
        bad = http.get("/v1/models/beacon", headers={"Authorization": "Bearer nk_nope_nope"})
        assert bad.status_code == 401

        accepted: dict[str, int] = {}
        for node, api_key in nodes:
            resp = http.get("/v1/models/beacon", headers={"Authorization": f"Bearer {api_key}"})
            assert resp.status_code == 200, resp.text
            beacon = verify_signed_beacon(resp.content, pub, last_sequence=None, now=utcnow(),
                                          node_id=node.id)
            (entry,) = beacon.models
            expected = 2 if in_canary(node.id, "iris-classifier", 50) else 1
            assert (entry.version, entry.rollout) == (expected, "canary" if expected == 2 else "active")
            data = httpx.get(entry.download_url, timeout=10).content
            verify_model_bytes(entry.signed_manifest.manifest, data)
            assert data == (v2_bytes if expected == 2 else v1_bytes)
            accepted[node.id] = beacon.sequence

        # Promote v2 to active: every node now gets v2 with a higher sequence.
        with session_factory() as s:
            promote_model_version(s, model_name="iris-classifier", version=2, to_status="active",
                                  actor=ADMIN)
            s.commit()
        node, api_key = nodes[0]
        old = http.get("/v1/models/beacon", headers={"Authorization": f"Bearer {api_key}"}).content
        after_promote = verify_signed_beacon(old, pub, last_sequence=accepted[node.id], now=utcnow())
        assert after_promote.models[0].version == 2
        assert after_promote.sequence > accepted[node.id]

        # A deliberate rollback is a newer beacon pointing at the older model: accepted.
        with session_factory() as s:
            rollback_model(s, model_name="iris-classifier", actor=ADMIN)
            s.commit()
        resp = http.get("/v1/models/beacon", headers={"Authorization": f"Bearer {api_key}"})
        rolled = verify_signed_beacon(resp.content, pub, last_sequence=after_promote.sequence,
                                      now=utcnow())
        assert rolled.models[0].version == 1 and rolled.sequence > after_promote.sequence
        # Replaying the captured pre-rollback beacon is refused.
        try:
            verify_signed_beacon(old, pub, last_sequence=rolled.sequence, now=utcnow())
        except BeaconReplayError:
            pass
        else:
            raise AssertionError("replayed beacon was accepted")
