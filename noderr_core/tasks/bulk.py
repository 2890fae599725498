"""Set-based writes that stay one statement per batch on PostgreSQL and cheap on SQLite.

psycopg2 runs an UPDATE executemany as one round trip per row; the task queue updates rows by the
hundred, so on PostgreSQL a batch becomes a single `UPDATE … FROM (VALUES …)` instead. SQLite is
in-process (no round trips), so a plain executemany is already the fast path there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, and_, bindparam, cast, column, update, values
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
    names = [*keys, *columns]
    if is_postgresql(session):
        v = values(*(column(n, table.c[n].type) for n in names), name="v").data(
            [tuple(r[n] for n in names) for r in rows]
        )
        stmt = (
            update(table)
            .where(and_(*(table.c[k] == v.c[k] for k in keys)))
            .values({c: cast(v.c[c], table.c[c].type) for c in columns})
        )
        session.execute(stmt)
        return
    stmt = (
        update(table)
        .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    params = [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows]
    session.connection().execute(stmt, params)


def dialect_insert(session: Session, table: Table):
    """INSERT with ON CONFLICT support for the session's backend."""
    if is_postgresql(session):
        return postgresql.insert(table)
    return sqlite.insert(table)
