"""Write many rows at once, inside the session's transaction, for bulk loads such as the demo.

An ORM insert costs an object, a flush and a round trip per row; loading a whole trial that way
takes minutes. Here a batch is one ``COPY`` on PostgreSQL (faster than an INSERT
from a handful of rows up) and one ``executemany`` on SQLite.
Values pass through each column's own bind processing, so they are stored exactly as an ORM
insert would store them (UTC instants, dates, booleans). Nothing here audits: callers pair
each batch with ``trial.audit.services.record_events`` in the same transaction.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Table, func, select, text

from trial.extensions import db


def reserve_ids(table: Table, count: int) -> list[int]:
    """Reserve ``count`` primary keys of ``table`` (see ``reserve_ids_for``)."""
    return reserve_ids_for({table: count}).get(table, [])


def reserve_ids_for(counts: Mapping[Table, int]) -> dict[Table, list[int]]:
    """Reserve primary keys for rows the caller inserts in this transaction, so that audit
    rows can name their records before the insert; one round trip for every table.

    PostgreSQL draws them from each table's sequence (safe under concurrency). SQLite counts
    on from the highest id: safe because writers hold the database write lock from BEGIN
    (``BEGIN IMMEDIATE``, see ``trial.database``), as every write request and command does.
    """
    counts = {table: n for table, n in counts.items() if n > 0}
    if not counts:
        return {}
    db.session.flush()  # rows added through the ORM must count
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        out = {}
        for table, n in counts.items():
            start = connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
            out[table] = list(range(start + 1, start + n + 1))
        return out
    tables = list(counts)
    values = ", ".join(f"(:k{i}, :t{i}, :n{i})" for i in range(len(tables)))
    params = {}
    for i, table in enumerate(tables):
        params.update({f"k{i}": i, f"t{i}": table.name, f"n{i}": counts[table]})
    statement = text(
        "SELECT s.k, nextval(pg_get_serial_sequence(s.t, 'id')) "
        f"FROM (VALUES {values}) AS s(k, t, n) CROSS JOIN LATERAL generate_series(1, s.n)"
    )
    out = {table: [] for table in tables}
    for k, record_id in connection.execute(statement, params):
        out[tables[k]].append(record_id)
    return {table: sorted(ids) for table, ids in out.items()}


def row_encoder(table: Table, names: list[str], dialect) -> Callable[[Mapping], tuple]:
    """A function turning a row mapping into the tuple of its ``names`` columns as the
    driver takes them, through each column's bind processing (UTC instants, booleans)."""
    columns = [table.c[name] for name in names]
    processors = [
        (index, processor)
        for index, column in enumerate(columns)
        if (processor := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]

    memo: dict[int, tuple[Any, Any]] = {}  # column -> (last input, its output)

    def values(row: Mapping[str, Any]) -> tuple:
        out = [row[name] for name in names]
        for index, processor in processors:
            value = out[index]
            if value is None:
                continue
            last = memo.get(index)
            if last is not None and last[0] is value:  # one instant shared by a batch
                out[index] = last[1]
            else:
                out[index] = processor(value)
                memo[index] = (value, out[index])
        return tuple(out)

    return values


def insert_few(table: Table, rows: list[Mapping[str, Any]], then: tuple[str, tuple]) -> None:
    """Insert a few rows (mappings with the same keys), then run ``then`` (SQL with ``%s``
    placeholders, and its parameters) in the same transaction, in as few round trips as
    the database allows.

    For the handful of rows a request writes, the round trips are the cost: PostgreSQL gets
    one statement (the insert as a data-modifying ``WITH``, ``then`` as its main part), where
    ``COPY`` would take two round trips and ``then`` a third; SQLite, in-process, two.
    Rows must not be many: each is held in memory, and PostgreSQL's arrays are sent at once.
    The session is not flushed first (that would be a round trip of its own when anything
    is pending), so rows must not refer to objects not yet written.
    """
    connection = db.session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    values = row_encoder(table, list(names), dialect)
    insert = _insert_sql(table, names, dialect)
    then_sql, then_params = then
    if dialect.name == "postgresql":
        columns = [list(column) for column in zip(*map(values, rows), strict=True)]
        sql = f"WITH inserted AS ({insert}) {then_sql}"
        connection.exec_driver_sql(sql, (*columns, *then_params))
        return
    connection.exec_driver_sql(insert, [values(row) for row in rows])
    connection.exec_driver_sql(then_sql.replace("%s", "?"), then_params)


@functools.cache
def _insert_sql(table: Table, names: tuple[str, ...], dialect) -> str:
    """The INSERT of ``insert_few``. PostgreSQL takes one array per column: the text is the
    same whatever the row count, so the driver parses it once and the server prepares it."""
    preparer = dialect.identifier_preparer
    head = f"INSERT INTO {preparer.format_table(table)} ({', '.join(map(preparer.quote, names))})"
    if dialect.name == "postgresql":
        arrays = (f"%s::{table.c[name].type.compile(dialect)}[]" for name in names)
        return f"{head} SELECT * FROM unnest({', '.join(arrays)})"
    return f"{head} VALUES ({', '.join('?' for _ in names)})"


def bulk_insert(table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (mappings with the same keys) into ``table``; return how many.

    ``rows`` may be a generator: it is consumed as the rows are sent, so on PostgreSQL the
    server stores one part while the caller computes the next. Columns left out get their
    server default (or NULL); Python-side defaults do not apply, so callers give every value
    they mean to store.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    rows = itertools.chain((first,), rows)
    db.session.flush()
    connection = db.session.connection()
    dialect = connection.dialect
    names = list(first)
    values = row_encoder(table, names, dialect)
    preparer = dialect.identifier_preparer
    table_name = preparer.format_table(table)
    column_list = ", ".join(preparer.quote(name) for name in names)
    count = 0
    if dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor:
            with cursor.copy(f"COPY {table_name} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(values(row))
                    count += 1
    elif dialect.name == "sqlite":
        batch = [values(row) for row in rows]
        connection.exec_driver_sql(_insert_sql(table, tuple(names), dialect), batch)
        count = len(batch)
    else:
        batch = list(rows)
        connection.execute(table.insert(), batch)
        count = len(batch)
    return count
