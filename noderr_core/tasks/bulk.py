"""Set-based writes that stay one statement per batch on PostgreSQL and cheap on SQLite.

psycopg2 runs an UPDATE executemany as one round trip per row; the task queue updates rows by the
hundred, so on PostgreSQL a batch becomes a single `UPDATE … FROM (VALUES …)` instead. SQLite is
in-process (no round trips), so a plain executemany is already the fast path there.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, and_, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def bulk_update(
    session: Session,
    table: Table,
    *,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
) -> None:
    """UPDATE table SET <columns> per row, matching rows on <keys>; one statement on PostgreSQL."""
    if not rows:
        return
    if is_postgresql(session):
        _bulk_update_postgresql(session, table, keys, columns, rows)
        return
    stmt = (
        update(table)
        .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    params = [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows]
    session.connection().execute(stmt, params)


@lru_cache(maxsize=256)
def _column_codecs(dialect, table: Table, names: tuple[str, ...]) -> tuple[dict[str, str], list]:
    """(PostgreSQL type name per column, bind processor per column), once per statement shape."""
    processors = [table.c[n].type._cached_bind_processor(dialect) for n in names]
    pg_types = {n: table.c[n].type.compile(dialect=dialect) for n in names}
    return pg_types, processors


def _driver_params(session, table, names, rows) -> tuple[dict[str, str], tuple]:
    """PostgreSQL type names per column and the rows' values as the driver wants them."""
    pg_types, processors = _column_codecs(session.get_bind().dialect, table, tuple(names))
    params: list[Any] = []
    for r in rows:
        for n, proc in zip(names, processors):
            value = r[n]
            params.append(proc(value) if proc is not None and value is not None else value)
    return pg_types, tuple(params)


def _bulk_update_postgresql(session, table, keys, columns, rows) -> None:
    # Hand-built `UPDATE … FROM (VALUES …)` sent through the driver: compiling SQLAlchemy's
    # values() construct for a 64-row batch costs tens of milliseconds, far more than running it.
    names = [*keys, *columns]
    pg_types, params = _driver_params(session, table, names, rows)
    placeholders = "(" + ", ".join(["%s"] * len(names)) + ")"
    set_clause = ", ".join(f"{c} = v.{c}::{pg_types[c]}" for c in columns)
    where = " AND ".join(f"{table.name}.{k} = v.{k}::{pg_types[k]}" for k in keys)
    sql = (
        f"UPDATE {table.name} SET {set_clause} "
        f"FROM (VALUES {', '.join([placeholders] * len(rows))}) AS v ({', '.join(names)}) WHERE {where}"
    )
    session.connection().exec_driver_sql(sql, params)


def bulk_upsert(
    session: Session,
    table: Table,
    *,
    conflict: Sequence[str],
    update_columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
) -> None:
    """INSERT rows; on a conflict on <conflict>, overwrite <update_columns>. One statement on PG."""
    if not rows:
        return
    names = list(rows[0])
    if is_postgresql(session):
        pg_types, params = _driver_params(session, table, names, rows)
        placeholders = "(" + ", ".join(f"%s::{pg_types[n]}" for n in names) + ")"
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
            f"{', '.join([placeholders] * len(rows))} ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in update_columns)
        )
        session.connection().exec_driver_sql(sql, params)
        return
    ins = sqlite.insert(table)
    stmt = ins.on_conflict_do_update(
        index_elements=list(conflict), set_={c: ins.excluded[c] for c in update_columns}
    )
    session.connection().execute(stmt, list(rows))


def dialect_insert(session: Session, table: Table):
    """INSERT with ON CONFLICT support for the session's backend."""
    return insert_for_dialect(session.get_bind().dialect.name, table)


def insert_for_dialect(dialect_name: str, table: Table):
    """INSERT with ON CONFLICT support for a backend by name (for statements built once)."""
    return (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(table)
