"""Alembic migrations — the only source of the schema. `noderr db upgrade` runs them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_database(database_url: str, revision: str = "head") -> None:
    from noderr_core.db import make_engine

    make_engine(database_url).dispose()  # a URL that cannot work fails here, with what to fix
    command.upgrade(alembic_config(database_url), revision)
