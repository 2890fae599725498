"""Onboarding fixtures: settings for a test database (payload builders: noderr_demo.typeform_payloads)."""

from __future__ import annotations

import pytest

from noderr_core.settings import Settings


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                    public_base_url="http://testserver", smtp_url="smtp://127.0.0.1:1")
