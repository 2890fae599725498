"""Resources shared by every domain: the database (through noderr_core)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from noderr_core.db import engine_for_url, session_scope
from noderr_core.settings import get_settings


class DatabaseResource(dg.ConfigurableResource):
    """The platform database. Empty URL = NODERR_DATABASE_URL (or the local SQLite default)."""

    database_url: str = ""

    def get_engine(self) -> Engine:
        return engine_for_url(self.database_url or get_settings().resolved_database_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commit on success, roll back on error."""
        with session_scope(self.get_engine()) as session:
            yield session
