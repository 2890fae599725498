"""Node-facing model beacon: `GET /v1/models/beacon` — which model versions this node runs.

The response is a SignedBeacon (noderr_protocol.models): per model the assigned version, its
signed manifest and a short-lived presigned download URL; signed as a whole with a sequence that
only grows and an expiry. The signing key and the presigning S3 client are loaded once per app.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import NODE_AUTH_RESPONSES, CurrentNode, NodeRoute, SessionDep, SettingsDep
from noderr_core.keys import model_signing_key
from noderr_core.modelstore import build_signed_beacon
from noderr_core.storage.s3 import make_presign_client
from noderr_protocol.models import SignedBeacon

router = APIRouter(prefix="/v1/models", tags=["node protocol"],
                   responses=NODE_AUTH_RESPONSES, route_class=NodeRoute)


def load_beacon_signer(state, settings) -> None:
    """Called from the app's lifespan: the signing key and the presigning boto3 client are built
    once per process (each costs milliseconds, far more than building a beacon)."""
    state.beacon_signing_key = model_signing_key(settings)
    state.beacon_presign_client = make_presign_client(settings)


def _beacon_signer(request: Request, settings):
    state = request.app.state
    if getattr(state, "beacon_signing_key", None) is None:  # an app built without its lifespan
        state.beacon_signing_key = model_signing_key(settings)
        state.beacon_presign_client = make_presign_client(settings)
    return state.beacon_signing_key, state.beacon_presign_client


@router.get("/beacon", response_model=SignedBeacon)
def get_beacon(
    request: Request, node: CurrentNode, session: SessionDep, settings: SettingsDep
) -> SignedBeacon:
    signing_key, presign_client = _beacon_signer(request, settings)
    return build_signed_beacon(session, node.id, settings, presign_client, signing_key=signing_key)
