"""The task hot path's statements: set-based writes, and prepared reads, on PostgreSQL.

psycopg2 runs an executemany as one round trip per row, and the task queue writes rows by the
hundred, so on PostgreSQL each batch is one `UPDATE … FROM json_to_recordset(…)` (or `INSERT …
SELECT … FROM json_to_recordset(…) ON CONFLICT …`) whose rows arrive as one JSON document (orjson:
~15× less client CPU than an array literal per column). `write_batches` goes further:
several batches become one statement of data-modifying CTEs, one round trip for a whole
transaction's writes. SQLite is in-process (no round trips): a plain executemany per batch is
already its fast path.

On PostgreSQL these statements, and the hot path's reads (`driver_rows`), are prepared once per
connection and run straight through the driver: planning a fused write cost 0.6–1.1 ms a call, and
SQLAlchemy's execution layer ~0.3 ms of Python per statement.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import orjson
from sqlalchemy import ARRAY, JSON, Float, Table, TypeDecorator, and_, any_, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.sqltypes import NullType

from noderr_core.db import PREPARED_STATEMENTS_OPTION

log = logging.getLogger(__name__)

# SQLSTATE 26000: EXECUTE of a name the server session does not hold.
INVALID_SQL_STATEMENT_NAME = "26000"


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def is_postgresql(session: Session) -> bool:
    return dialect_name(session) == "postgresql"


def per_dialect(build, column) -> dict[str, Any]:
    """`build(column IN :ids)` for each backend, by dialect name, for `driver_rows`.

    SQLite gets an expanding IN; PostgreSQL gets `column = ANY(:ids)`, one statement text (prepared
    once) for any number of ids.
    """
    return {
        "sqlite": build(column.in_(bindparam("ids", expanding=True))),
        "postgresql": build(column == any_(bindparam("ids", type_=ARRAY(column.type)))),
    }


@dataclass(frozen=True)
class BulkUpdate:
    """UPDATE table SET <columns> per row, matching rows on <keys>."""

    table: Table
    keys: Sequence[str]
    columns: Sequence[str]
    rows: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class BulkUpsert:
    """INSERT rows (every row has the same keys); on a conflict on <conflict>, overwrite <update_columns>."""

    table: Table
    conflict: Sequence[str]
    update_columns: Sequence[str]
    rows: Sequence[dict[str, Any]]


def write_batches(session: Session, *writes: BulkUpdate | BulkUpsert) -> None:
    """Run the writes: one statement on PostgreSQL, one executemany per write on SQLite.

    On PostgreSQL every write sees the same snapshot and none sees another's changes, so the writes
    must not touch the same rows (one statement cannot change a row twice).
    """
    writes = tuple(w for w in writes if w.rows)
    if not writes:
        return
    if is_postgresql(session):
        _write_postgresql(session, writes)
        return
    conn = session.connection()
    for w in writes:
        if isinstance(w, BulkUpdate):
            stmt = (
                update(w.table)
                .where(and_(*(w.table.c[k] == bindparam(f"k_{k}") for k in w.keys)))
                .values({c: bindparam(f"v_{c}") for c in w.columns})
            )
            conn.execute(stmt, [{**{f"k_{k}": r[k] for k in w.keys}, **{f"v_{c}": r[c] for c in w.columns}}
                                for r in w.rows])
        else:
            ins = sqlite.insert(w.table)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=list(w.conflict), set_={c: ins.excluded[c] for c in w.update_columns}),
                list(w.rows),
            )


@lru_cache(maxsize=256)
def _record_codec(dialect, table: Table, names: tuple[str, ...]) -> tuple[str, list]:
    """(the `AS v (name type, …)` column list, a converter per column or None), once per shape."""
    definitions = ", ".join(f"{n} {table.c[n].type.compile(dialect=dialect)}" for n in names)
    return definitions, [_value_converter(table.c[n].type, dialect) for n in names]


def _value_converter(type_, dialect):
    """A function turning one non-NULL column value into what goes into the JSON document (None: as
    it is). `_records` passes NULLs by without calling it."""
    if isinstance(type_, JSON):
        # Embedded as JSON, not as a string holding JSON; serialized the way the column is (json_text).
        proc = type_._cached_bind_processor(dialect)
        return lambda v: orjson.Fragment(proc(v))
    if isinstance(type_, Float):
        return _finite
    proc = type_._cached_bind_processor(dialect)
    if proc is None:
        return None
    # Our TypeDecorators (UTC datetimes): one `now` repeats through a batch, converted once each.
    return lru_cache(maxsize=16)(proc) if isinstance(type_, TypeDecorator) else proc


def _finite(value):
    # JSON has no NaN or infinity (orjson would write null): refuse rather than store NULL.
    if not math.isfinite(value):
        raise ValueError(f"a non-finite number cannot be written: {value!r}")
    return value


def _once_each(proc):
    """A converter of a list of hashable values: NULL stays NULL, a repeated value is converted once."""

    def convert(values: list) -> list:
        memo: dict[Any, Any] = {None: None}
        return [memo[v] if v in memo else memo.setdefault(v, proc(v)) for v in values]

    return convert


def _records(dialect, table: Table, names: Sequence[str], rows, params: list, types: list) -> str:
    """`json_to_recordset($n) AS v (name type, …)`, adding the rows as one JSON document to `params`.

    One text parameter per write: psycopg2 quoting an array literal per column cost ~0.5 ms of
    client CPU per 64-row, 10-column write, the JSON document (orjson) ~0.03 ms, and PostgreSQL
    reads it no slower than the arrays.
    """
    definitions, converters = _record_codec(dialect, table, tuple(names))
    pairs = list(zip(names, converters))
    records = [{n: (r[n] if convert is None or r[n] is None else convert(r[n])) for n, convert in pairs}
               for r in rows]
    params.append(orjson.dumps(records).decode())
    types.append("json")
    return f"json_to_recordset(${len(params)}) AS v ({definitions})"


def _write_postgresql(session: Session, writes: Sequence[BulkUpdate | BulkUpsert]) -> None:
    # Hand-built SQL sent through the driver: compiling SQLAlchemy's constructs for a 64-row batch
    # costs more than running it, and one array per column keeps the text the same for any number
    # of rows, so the statement is prepared once per connection (planning it cost ~0.6–1 ms a call).
    dialect = session.get_bind().dialect
    params: list[Any] = []
    types: list[str] = []
    parts = []
    for w in writes:
        t = w.table.name
        if isinstance(w, BulkUpdate):
            names = [*w.keys, *w.columns]
            source = _records(dialect, w.table, names, w.rows, params, types)
            parts.append(
                f"UPDATE {t} SET {', '.join(f'{c} = v.{c}' for c in w.columns)} FROM {source} "
                f"WHERE {' AND '.join(f'{t}.{k} = v.{k}' for k in w.keys)}"
            )
        else:
            names = list(w.rows[0])
            source = _records(dialect, w.table, names, w.rows, params, types)
            parts.append(
                f"INSERT INTO {t} ({', '.join(names)}) SELECT {', '.join(names)} FROM {source} "
                f"ON CONFLICT ({', '.join(w.conflict)}) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in w.update_columns)
            )
    if len(parts) == 1:
        sql = parts[0]
    else:
        sql = "WITH " + ", ".join(f"w{n} AS ({p})" for n, p in enumerate(parts)) + " SELECT 1"
    run_prepared(session, sql, params, types=types)


def run_prepared(
    session: Session, sql: str, params: Sequence[Any], *, types: Sequence[str] | None = None, before: str = ""
) -> list[tuple]:
    """Run `sql` ($1… parameters) as a statement prepared once per PostgreSQL connection; its rows.

    `types` names the parameters' types (`unknown`, or none at all: PostgreSQL infers them from
    their use); the types it settled on are read back once, to cast each argument. `before` (e.g.
    SET LOCAL settings) goes out in the same round trip. The prepared names live in the pooled
    connection's `info`, which SQLAlchemy discards with the connection (a reconnect prepares
    again); prepared statements outlive transactions.
    """
    conn = session.connection()
    if not conn.get_execution_options().get(PREPARED_STATEMENTS_OPTION, True):
        return _run_unprepared(conn, sql, params, types, before)
    prepared = conn.connection.info.setdefault("noderr_prepared", {})
    name = "noderr_" + hashlib.blake2b(f"{types}{sql}".encode(), digest_size=8).hexdigest()
    arg_types = prepared.get(name)
    if arg_types is None:
        # The server session may hold it already (a PREPARE whose transaction failed afterwards is
        # kept: prepared statements are not transactional).
        read_types = f"SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{name}'"
        found = _driver_execute(conn, read_types, None)
        if not found:
            declared = f" ({', '.join(types)})" if types else ""
            found = _driver_execute(conn, f"PREPARE {name}{declared} AS {sql}; {read_types}", None)
        [[arg_types]] = found
        prepared[name] = arg_types
    # Each argument cast: psycopg2 sends values as literals (a list of strings as text[], which
    # json[] does not take).
    execute = f"EXECUTE {name} ({', '.join(f'%s::{t}' for t in arg_types)})" if arg_types else f"EXECUTE {name}"
    try:
        return _driver_execute(conn, f"{before}; {execute}" if before else execute, tuple(params))
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != INVALID_SQL_STATEMENT_NAME:
            raise
        # The server session lost what this connection prepared: a pooler in transaction mode
        # (PgBouncer) hands each transaction another server session. Forget the names, so the next
        # transaction on this connection prepares again, and say what to change.
        prepared.clear()
        log.error(
            "prepared statement %s is missing on the database server session: behind a pooler in "
            "transaction mode (PgBouncer) set NODERR_DATABASE_PREPARED_STATEMENTS=false", name,
        )
        raise


def _run_unprepared(conn, sql: str, params: Sequence[Any], types: Sequence[str] | None, before: str):
    """`run_prepared` without PREPARE (behind a transaction-mode pooler): $n become cast literals."""

    def literal(match: re.Match) -> str:
        n = int(match.group(1)) - 1
        known = types is not None and types[n] != "unknown"
        return f"%(p{n})s::{types[n]}" if known else f"%(p{n})s"

    text = re.sub(r"\$(\d+)", literal, sql.replace("%", "%%"))
    return _driver_execute(conn, f"{before}; {text}" if before else text, {f"p{i}": v for i, v in enumerate(params)})


def _driver_execute(conn, sql: str, params) -> list[tuple]:
    """One statement on the connection's psycopg2 cursor, inside the session's transaction.

    SQLAlchemy's execution layer cost ~0.2 ms of Python per statement. Driver errors are raised
    as SQLAlchemy raises them (`DBAPIError` subclasses), and a lost connection is invalidated.
    """
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        disconnect = dialect.is_disconnect(exc, dbapi_conn, cursor)
        if disconnect:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect,
                                  connection_invalidated=disconnect) from exc
    finally:
        cursor.close()


@dataclass(frozen=True)
class _PreparedSelect:
    sql: str  # $1… parameters
    names: tuple[str, ...]  # the bind parameter behind each $n
    types: tuple[str, ...]  # its PostgreSQL type ("unknown": inferred)
    constants: dict[str, Any]  # values of the statement's own literals, by name
    binds: tuple  # bind processor (or None) per $n
    results: tuple  # (column name, result processor or None) per column


@lru_cache(maxsize=64)
def _prepared_select(statement) -> _PreparedSelect:
    dialect = postgresql.psycopg2.dialect()
    compiled = statement.compile(dialect=dialect)
    names: list[str] = []

    def positional(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", positional, str(compiled)).replace("%%", "%")
    by_name = {compiled.bind_names[b]: b for b in compiled.binds.values()}
    binds = tuple(by_name[n].type._cached_bind_processor(dialect) for n in names)
    # Declared as SQLAlchemy types them (a literal 1 in a CASE is an integer, not text); untyped
    # parameters are left for PostgreSQL to infer.
    types = tuple(
        "unknown" if isinstance(by_name[n].type, NullType) else by_name[n].type.compile(dialect=dialect)
        for n in names
    )
    # Literals in the statement (a status compared with a constant) are bound parameters too.
    constants = {n: by_name[n].effective_value for n in names if not by_name[n].required}
    # psycopg2's own values serve (it parses JSON itself), except for our TypeDecorators (UTC datetimes).
    results = tuple(
        (c.name, partial(c.type.process_result_value, dialect=dialect) if isinstance(c.type, TypeDecorator)
         else None)
        for c in statement.exported_columns
    )
    return _PreparedSelect(sql, tuple(names), types, constants, binds, results)


def driver_rows(session: Session, statement, params: dict[str, Any], *, before: str = "") -> list[dict[str, Any]]:
    """The rows of a prebuilt statement that returns rows, as dicts.

    On PostgreSQL the statement is prepared once per connection and run through the driver, with
    `before` in the same round trip; it must use plain bind parameters (`= ANY(:ids)`, not an
    expanding IN). Values come back as SQLAlchemy returns them (UTC-aware datetimes, parsed JSON).
    """
    if not is_postgresql(session):
        return [dict(r) for r in session.execute(statement, params).mappings()]
    ps = _prepared_select(statement)
    args = [params[n] if n in params else ps.constants[n] for n in ps.names]
    args = [v if proc is None or v is None else proc(v) for v, proc in zip(args, ps.binds)]
    rows = run_prepared(session, ps.sql, args, types=ps.types, before=before)
    names = [name for name, _ in ps.results]
    converted = [(i, _once_each(proc)) for i, (_, proc) in enumerate(ps.results) if proc is not None]
    if not converted:
        return [dict(zip(names, row)) for row in rows]
    columns = [list(c) for c in zip(*rows)] if rows else []
    for i, convert in converted:
        if columns:
            columns[i] = convert(columns[i])
    return [dict(zip(names, row)) for row in zip(*columns)]


def dialect_insert(session: Session, table: Table):
    """INSERT with ON CONFLICT support for the session's backend."""
    return insert_for_dialect(dialect_name(session), table)


def insert_for_dialect(dialect_name: str, table: Table):
    """INSERT with ON CONFLICT support for a backend by name (for statements built once)."""
    return (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(table)
