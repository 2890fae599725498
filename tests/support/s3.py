"""S3 fixtures: a real SeaweedFS (`weed mini`) on loopback for the whole test session.

`s3_server` yields a `SeaweedProcess` (endpoint_url, access_key_id, secret_access_key, region,
`.env()` with the NODERR_S3_* variables, `.client()` for a boto3 client); `s3_bucket` creates a
fresh, empty bucket per test and returns its name. `s3_settings` builds Settings pointing at both.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from noderr_local.seaweed import start_seaweed


@pytest.fixture(scope="session")
def s3_server():
    root = Path(tempfile.mkdtemp(prefix="noderr-s3-"))
    server = start_seaweed(
        root, access_key_id=f"test-{secrets.token_hex(4)}", secret_access_key=secrets.token_hex(20)
    )
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A new, empty bucket on the session's SeaweedFS (created; test code may also ensure it)."""
    name = f"noderr-test-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(s3_server, s3_bucket, tmp_path):
    """Settings (NODERR_ENV=test) pointing at the session's SeaweedFS and this test's bucket."""
    from pydantic import SecretStr

    from noderr_core.settings import Settings

    return Settings(
        env="test",
        state_dir=tmp_path / "state",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=SecretStr(s3_server.secret_access_key),
        s3_region=s3_server.region,
        model_bucket=s3_bucket,
    )
