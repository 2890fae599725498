"""`noderr clients create/revoke/list` against a real database."""

from __future__ import annotations

from click.testing import CliRunner

from noderr_cli.main import main
from noderr_core.db import engine_for_url, make_session_factory
from noderr_core.settings import get_settings
from noderr_core.tasks import authenticate_client


def test_create_list_revoke(sqlite_url, monkeypatch):
    monkeypatch.setenv("NODERR_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = runner.invoke(main, ["clients", "create", "Acme Labs"])
        assert out.exit_code == 0, out.output
        key = out.output.strip().splitlines()[-1]
        assert key.startswith("ck_")
        factory = make_session_factory(engine_for_url(sqlite_url))
        with factory() as s:
            assert authenticate_client(s, key).name == "Acme Labs"
        dup = runner.invoke(main, ["clients", "create", "Acme  Labs"])
        assert dup.exit_code != 0 and "already exists" in dup.output
        listed = runner.invoke(main, ["clients", "list"])
        assert "Acme Labs" in listed.output and key.split("_")[1] in listed.output
        revoked = runner.invoke(main, ["clients", "revoke", key])
        assert revoked.exit_code == 0, revoked.output
        with factory() as s:
            assert authenticate_client(s, key) is None
        assert runner.invoke(main, ["clients", "revoke", "0000000000000000"]).exit_code != 0
    finally:
        get_settings.cache_clear()
