"""Database fixtures: every test that asks for `db_url` runs on SQLite *and* PostgreSQL.

PostgreSQL is a throwaway cluster from the installed binaries (initdb + pg_ctl), started once per
test session and stopped by PID. Migrations run once into a template; each test gets a fresh copy
(a file copy for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from noderr_core.db import make_engine, make_session_factory
from noderr_core.migrations import upgrade_database
from noderr_local.postgres import PostgresCluster

@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory):
    # Not under pytest's 0700 tmp tree: the cluster runs as the unprivileged 'postgres' user.
    root = Path(tempfile.mkdtemp(prefix="noderr-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root)
    cluster.start()
    cluster.admin_execute("CREATE DATABASE noderr_template")
    upgrade_database(cluster.url("noderr_template"))
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


def _fresh_postgres(cluster: PostgresCluster) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.admin_execute(f"CREATE DATABASE {name} TEMPLATE noderr_template")
    return cluster.url(name)


def _fresh_sqlite(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "noderr.db"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database; the test runs once per backend."""
    if request.param == "sqlite":
        return _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    return _fresh_postgres(request.getfixturevalue("postgres_cluster"))


@pytest.fixture
def pg_url(postgres_cluster) -> str:
    """A migrated, empty PostgreSQL database (for PostgreSQL-only tests such as SKIP LOCKED)."""
    return _fresh_postgres(postgres_cluster)


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    return _fresh_sqlite(sqlite_template, tmp_path)


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine):
    return make_session_factory(engine)
