"""The API's lookaside for node image signatures: what podman fetches when it verifies a pull."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from noderr_core.node_image import SIGNATURES_PREFIX, signature_object_key
from noderr_local.images import publish_signatures

HEX = "cd" * 32
PATH = f"noderr/node@sha256={HEX}/signature-1"


@pytest.fixture
def api(s3_settings, sqlite_url):
    from api.main import create_app

    settings = s3_settings.model_copy(update={"database_url": sqlite_url})
    with TestClient(create_app(settings)) as client:
        yield client


def test_published_signatures_are_served_and_missing_ones_are_404(api, s3_settings, s3_server,
                                                                  tmp_path):
    staging = tmp_path / "staging"
    (staging / f"noderr/node@sha256={HEX}").mkdir(parents=True)
    (staging / PATH).write_bytes(b"\x89signature-bytes")
    keys = publish_signatures(s3_server.client(), s3_settings.model_bucket, staging)
    assert keys == [SIGNATURES_PREFIX + PATH]

    resp = api.get(f"/v1/node-image/signatures/{PATH}")
    assert resp.status_code == 200 and resp.content == b"\x89signature-bytes"
    assert resp.headers["content-type"] == "application/octet-stream"
    # c/image reads signature-1, -2, ... until the first 404.
    assert api.get(f"/v1/node-image/signatures/noderr/node@sha256={HEX}/signature-2").status_code == 404


@pytest.mark.parametrize("path", [
    "../../etc/passwd",
    "noderr/node@sha256=abc/signature-1",  # short digest
    f"noderr/node@sha256={HEX}/signature-0",
    f"noderr/node@sha256={HEX}/manifest",
    f"Noderr/node@sha256={HEX}/signature-1",  # repositories are lower case
    f"noderr/node@sha256={HEX}/signature-1/extra",
])
def test_only_signature_paths_reach_the_object_store(api, path):
    assert signature_object_key(path) is None
    assert api.get(f"/v1/node-image/signatures/{path}").status_code == 404
