"""Database engine and session handling for SQLite (the local default) and PostgreSQL.

A URL that cannot be used raises `DatabaseUrlError` naming what to fix (never a driver traceback).
The default SQLite file lives in the platform's own state directory, which `engine_for_settings`
creates; an explicitly configured SQLite file under a missing directory is an error, not a
silently created directory (a typo in NODERR_DATABASE_URL must not start an empty database).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

URL_HINT = "use sqlite:///PATH/TO/FILE.db or postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE"


class DatabaseUrlError(ValueError):
    """The database URL cannot be used as given; the message says what to fix."""


def redacted_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def is_sqlite(url_or_engine: str | Engine) -> bool:
    url = str(url_or_engine.url) if isinstance(url_or_engine, Engine) else url_or_engine
    return url.startswith("sqlite")


READ_ONLY_OPTION = "noderr_read_only"


def mark_read_only(session: Session) -> None:
    """Make the session's (next) transaction a read: no SQLite write lock. Call before any query."""
    session.connection(execution_options={READ_ONLY_OPTION: True})


PREPARED_STATEMENTS_OPTION = "noderr_prepared_statements"


def make_engine(url: str, *, prepared_statements: bool = True, **kwargs) -> Engine:
    """Create an engine with the settings each backend needs under concurrent writers.

    `prepared_statements` (PostgreSQL): whether the task hot path may prepare its statements once
    per connection (`noderr_core.tasks.bulk.run_prepared`); off behind a transaction-mode pooler.
    """
    try:
        scheme = make_url(url).drivername
    except ArgumentError as exc:
        raise DatabaseUrlError(f"{redacted_url(url)!r} is not a database URL: {URL_HINT}") from exc
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise DatabaseUrlError(
                f"the SQLite database {path} is in a directory that does not exist "
                f"({Path(path).parent}): create it, or fix NODERR_DATABASE_URL"
            )
        engine = _create_engine(
            url, scheme, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
            # Let the "begin" event below issue BEGIN IMMEDIATE instead of pysqlite's implicit BEGIN.
            dbapi_conn.isolation_level = None

        # SQLite's default deferred transactions deadlock writers that read first; BEGIN IMMEDIATE
        # takes the write lock up front so concurrent writers queue on busy_timeout instead.
        # A session marked read-only (READ_ONLY_OPTION, see read_only_session) takes no write lock:
        # public read paths must never queue writers behind them.
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover - trivial
            read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("json_serializer", json_text)
    kwargs["execution_options"] = {**kwargs.get("execution_options", {}),
                                   PREPARED_STATEMENTS_OPTION: prepared_statements}
    return _create_engine(url, scheme, **kwargs)


def json_text(value) -> str:
    """JSON column values as text: orjson (several times faster than `json` on the task hot path's
    tensors), falling back to `json` for what orjson refuses (integers beyond 64 bits: on-chain
    amounts). PostgreSQL only: its `json` type refuses NaN either way."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def _create_engine(url: str, scheme: str, **kwargs) -> Engine:
    try:
        return create_engine(url, **kwargs)
    except NoSuchModuleError as exc:
        raise DatabaseUrlError(f"{scheme!r} in {redacted_url(url)!r} is not a supported database: "
                               f"{URL_HINT}") from exc
    except ModuleNotFoundError as exc:
        raise DatabaseUrlError(f"the database driver for {scheme!r} ({exc.name}) is not installed: "
                               f"{URL_HINT}") from exc
    except ArgumentError as exc:
        raise DatabaseUrlError(f"{redacted_url(url)!r} is not a usable database URL ({exc}): "
                               f"{URL_HINT}") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@lru_cache(maxsize=8)
def engine_for_url(url: str) -> Engine:
    """One engine per URL per process (engines own connection pools)."""
    return make_engine(url)


def engine_for_settings(settings, **kwargs) -> Engine:
    """The platform database of `settings`; the default SQLite file's state directory is created.

    Keyword arguments go to `make_engine` (pool sizes of the API's workers)."""
    if not settings.database_url:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("prepared_statements", settings.database_prepared_statements)
    return make_engine(settings.resolved_database_url, **kwargs)


def get_engine() -> Engine:
    from noderr_core.settings import get_settings

    return engine_for_settings(get_settings())


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on error."""
    factory = make_session_factory(engine or get_engine())
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
