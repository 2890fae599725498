"""Outside local, weak secrets stop the start with the variable named (finding 9), and /metrics
needs its token (finding 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from noderr_core.settings import Settings
from tests.support.factories import production_secrets


@pytest.mark.parametrize("name,value,expected", [
    ("secret_key", "", "NODERR_SECRET_KEY is empty"),
    ("secret_key", "short", "NODERR_SECRET_KEY is 5 characters; at least 32 are required"),
    ("secret_key", "y" * 40, "NODERR_SECRET_KEY uses fewer than 8 distinct characters"),
    ("bootstrap_admin_password", "x", "NODERR_BOOTSTRAP_ADMIN_PASSWORD is 1 characters"),
    ("bootstrap_admin_password", "password1234", "NODERR_BOOTSTRAP_ADMIN_PASSWORD is built around a common word"),
    ("metrics_token", "", "NODERR_METRICS_TOKEN is empty"),
    ("typeform_secret", "abc", "NODERR_TYPEFORM_SECRET is 3 characters"),
    ("s3_secret_access_key", "s3-secret", "NODERR_S3_SECRET_ACCESS_KEY is 9 characters"),
    ("chain_signer_key", "0x1234", "NODERR_CHAIN_SIGNER_KEY must be 32 bytes of hex"),
    ("model_signing_key", "00" * 32, "NODERR_MODEL_SIGNING_KEY is not a random key"),
])
@pytest.mark.parametrize("env", ["staging", "production"])
def test_weak_secrets_are_refused_by_name(env, name, value, expected):
    with pytest.raises(ValueError, match=expected):
        Settings(env=env, **production_secrets(**{name: value}))


def test_strong_secrets_pass_and_local_keeps_its_defaults():
    assert Settings(env="production", **production_secrets()).env == "production"
    assert Settings(env="local").secret_key.get_secret_value()


def test_start_up_error_names_the_variable(tmp_path):
    """What an operator sees when uvicorn refuses to start."""
    root = Path(__file__).resolve().parents[2]
    env = {"NODERR_ENV": "production", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}
    env.update({f"NODERR_{k.upper()}": v for k, v in production_secrets(secret_key="abc").items()})
    out = subprocess.run([sys.executable, "-c", "from noderr_core.settings import Settings; Settings()"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0
    assert "NODERR_SECRET_KEY is 3 characters; at least 32 are required" in out.stderr


def test_metrics_require_the_token_outside_local(sqlite_url, tmp_path):
    from api.main import create_app

    values = production_secrets()
    settings = Settings(env="production", database_url=sqlite_url, state_dir=tmp_path / "s", **values)
    with TestClient(create_app(settings)) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
        ok = http.get("/metrics", headers={"authorization": f"Bearer {values['metrics_token']}"})
        assert ok.status_code == 200 and "noderr_api_requests" in ok.text
    # Even a settings object that skipped validation never serves /metrics open outside local.
    unchecked = settings.model_copy(update={"metrics_token": SecretStr("")})
    with TestClient(create_app(unchecked)) as http:
        assert http.get("/metrics").status_code == 401
