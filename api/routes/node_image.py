"""Node image signatures: `GET /v1/node-image/signatures/<repository>@sha256=<hex>/signature-<n>`.

The "lookaside" store containers/image reads when an operator's podman pulls the node image under
the bundle's policy (noderr_core/node_image.py). Public and read-only: a signature is useless
without the platform's private key and says nothing secret. Only paths of that exact shape are
looked up (anything else is 404 before the object store is touched); bodies are bounded.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from api.deps import SettingsDep
from noderr_core.node_image import MAX_SIGNATURE_BYTES, SIGNATURES_ROUTE, signature_object_key
from noderr_core.storage.s3 import make_s3_client

router = APIRouter(prefix=SIGNATURES_ROUTE, tags=["node image"])


def _s3(request: Request, settings):
    state = request.app.state
    if getattr(state, "node_image_s3", None) is None:
        state.node_image_s3 = make_s3_client(settings, connect_timeout=2, read_timeout=5)
    return state.node_image_s3


@router.get("/{path:path}", responses={404: {"description": "no such signature"}})
def node_image_signature(path: str, request: Request, settings: SettingsDep) -> Response:
    key = signature_object_key(path)
    if key is None:
        raise HTTPException(404, "not a node image signature path")
    client = _s3(request, settings)
    try:
        obj = client.get_object(Bucket=settings.model_bucket, Key=key)
    except client.exceptions.NoSuchKey:
        raise HTTPException(404, "no such signature") from None
    if obj["ContentLength"] > MAX_SIGNATURE_BYTES:
        raise HTTPException(404, "no such signature")
    body = obj["Body"].read(MAX_SIGNATURE_BYTES)
    return Response(body, media_type="application/octet-stream",
                    headers={"Cache-Control": "public, max-age=300"})
