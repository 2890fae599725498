"""The foundation: settings refuse default secrets, migrations build the schema on both backends."""

import pytest
from sqlalchemy import inspect, select

from noderr_core.bootstrap import ensure_bootstrap_admin
from noderr_core.tables import AdminUser
from noderr_core.security import verify_password
from noderr_core.settings import Settings


def test_settings_refuse_default_secrets_outside_local(monkeypatch):
    with pytest.raises(ValueError, match="NODERR_TYPEFORM_SECRET"):
        Settings(env="production")


def test_settings_accept_real_secrets_in_production():
    from tests.support.factories import production_secrets

    s = Settings(env="production", **production_secrets())
    assert s.env == "production"


def test_default_database_is_sqlite_under_state_dir(tmp_path):
    s = Settings(state_dir=tmp_path)
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'noderr.db'}"


def test_migrations_create_core_tables(engine):
    tables = set(inspect(engine).get_table_names())
    assert {"operator_applications", "admin_users", "nodes", "outbox", "heartbeats"} <= tables


def test_bootstrap_admin_created_once(session_factory):
    settings = Settings(bootstrap_admin_email="Boss@Example.com", bootstrap_admin_password="pw-123456")
    with session_factory() as s:
        assert ensure_bootstrap_admin(s, settings) is not None
        s.commit()
    with session_factory() as s:
        assert ensure_bootstrap_admin(s, settings) is None
        admins = s.scalars(select(AdminUser)).all()
    assert [a.email for a in admins] == ["boss@example.com"]
    assert verify_password(admins[0].password_hash, "pw-123456")


def test_two_api_workers_on_a_fresh_database_start_and_create_one_admin(pg_url, api_server_factory):
    """uvicorn --workers 2: both workers bootstrap the admin at once; neither may crash the server."""
    server = api_server_factory(pg_url, workers=2)
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
    from noderr_core.db import make_engine, make_session_factory

    engine = make_engine(pg_url)
    try:
        with make_session_factory(engine)() as s:
            assert len(s.scalars(select(AdminUser)).all()) == 1
    finally:
        engine.dispose()
