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
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Float, Table

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
    tables = tuple(counts)
    sql = _reserve_sql(tuple(table.name for table in tables), connection.dialect.name)
    if connection.dialect.name != "postgresql":
        highest = connection.exec_driver_sql(sql).one()
        return {
            table: list(range(start + 1, start + counts[table] + 1))
            for table, start in zip(tables, highest, strict=True)
        }
    out = {table: [] for table in tables}
    for k, record_id in connection.exec_driver_sql(sql, tuple(counts[t] for t in tables)):
        out[tables[k]].append(record_id)
    return {table: sorted(ids) for table, ids in out.items()}


@functools.cache
def _reserve_sql(names: tuple[str, ...], dialect_name: str) -> str:
    """``reserve_ids_for``'s one statement: each table's highest id (SQLite), or as many
    values of each table's id sequence as asked, tagged with the table's position."""
    if dialect_name != "postgresql":
        return "SELECT " + ", ".join(f'(SELECT coalesce(max(id), 0) FROM "{n}")' for n in names)
    return " UNION ALL ".join(
        f"SELECT {k}, nextval(pg_get_serial_sequence('{n}', 'id')) FROM generate_series(1, %s)"
        for k, n in enumerate(names)
    )


def row_encoder(table: Table, names: list[str], dialect) -> Callable[[Mapping], tuple]:
    """A function turning a row mapping into the tuple of its ``names`` columns as the
    driver takes them, through each column's bind processing (UTC instants, booleans)."""
    processors = _bind_processors(table, tuple(names), dialect)
    pick = operator.itemgetter(*names)
    memo: dict[int, tuple[Any, Any]] = {}  # column -> (last input, its output)

    def values(row: Mapping[str, Any]) -> tuple:
        picked = pick(row)
        out = list(picked) if len(names) > 1 else [picked]
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


@functools.cache
def _bind_processors(table: Table, names: tuple[str, ...], dialect) -> tuple:
    """(position, bind processor) of the ``names`` columns that have one, looked up once.

    A float column also turns integers into floats: a column of 2 and 3.5 is then one type,
    as PostgreSQL's arrays need (the value stored is the same double either way).
    """
    processors = []
    for index, name in enumerate(names):
        column_type = table.c[name].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is None and isinstance(column_type, Float):
            processor = float
        if processor is not None:
            processors.append((index, processor))
    return tuple(processors)


def insert_few(parts: Sequence[tuple], then: tuple[str, tuple]) -> tuple | None:
    """Insert a few rows into one or more tables, then run ``then`` (SQL with ``%s``
    placeholders, and its parameters) in the same transaction, in as few round trips as the
    database allows; return the first row ``then`` gives, if it gives any.

    A part is ``(table, rows)`` or ``(table, rows, shared)``: the rows are mappings with the
    same keys; ``shared`` names columns that hold one value in every row (an instant, the
    actor), which PostgreSQL is then sent once rather than once per row (checked: a part
    whose rows differ in a column it names shared is refused with ValueError).

    For the handful of rows a request writes, the round trips are the cost: PostgreSQL gets
    one statement (each insert a data-modifying ``WITH``, ``then`` the main part), where
    ``COPY`` would take two round trips per table and ``then`` one more; SQLite, in-process,
    one ``executemany`` per table. The parts run as one statement, so rows may not depend on
    each other's defaults, but a row may refer to another part's row by an id reserved
    beforehand (``reserve_ids_for``): foreign keys are checked at the statement's end.
    Rows must not be many: each is held in memory, and PostgreSQL's arrays are sent at once.
    The session is not flushed first (that would be a round trip of its own when anything
    is pending), so rows must not refer to objects not yet written.
    """
    parts = [(table, rows, tuple(*shared)) for table, rows, *shared in parts if rows]
    for table, rows, shared in parts:
        for name in shared:
            first = rows[0][name]
            if any(row[name] != first for row in rows):
                raise ValueError(f"{table.name}.{name} is not one value in every row")
    connection = db.session.connection()
    dialect = connection.dialect
    then_sql, then_params = then
    shapes = tuple((table, tuple(rows[0]), shared) for table, rows, shared in parts)
    encoded = [
        map(row_encoder(table, list(names), dialect), rows)
        for (table, names, _), (_, rows, _) in zip(shapes, parts, strict=True)
    ]
    if dialect.name == "postgresql":
        parameters = []
        for (_, names, shared), values in zip(shapes, encoded, strict=True):
            columns = dict(zip(names, zip(*values, strict=True), strict=True))
            parameters.extend(columns.pop(name)[0] for name in shared)
            parameters.extend(map(list, columns.values()))
        sql = _statement_sql(shapes, then_sql, dialect)
        return _first_row(connection.exec_driver_sql(sql, (*parameters, *then_params)))
    for (table, names, _), values in zip(shapes, encoded, strict=True):
        connection.exec_driver_sql(_insert_sql(table, names, (), dialect), list(values))
    return _first_row(connection.exec_driver_sql(then_sql.replace("%s", "?"), then_params))


def _first_row(result) -> tuple | None:
    return tuple(result.first()) if result.returns_rows else None


@functools.cache
def _statement_sql(shapes: tuple, then_sql: str, dialect) -> str:
    """PostgreSQL's one statement for ``insert_few``: every insert a ``WITH`` part."""
    if not shapes:
        return then_sql
    inserts = ", ".join(
        f"w{index} AS ({_insert_sql(table, names, shared, dialect)})"
        for index, (table, names, shared) in enumerate(shapes)
    )
    return f"WITH {inserts} {then_sql}"


@functools.cache
def _insert_sql(table: Table, names: tuple[str, ...], shared: tuple[str, ...], dialect) -> str:
    """The INSERT of ``insert_few``. PostgreSQL takes one value per ``shared`` column and one
    array per other column: the text is the same whatever the row count, so the server
    prepares it once (psycopg prepares a statement run five times). The arrays go in binary
    (``%b``), which psycopg packs without quoting each element: a visit's hundred arrays
    cost 1.2 ms less CPU than as text."""
    preparer = dialect.identifier_preparer
    if dialect.name != "postgresql":
        listed = ", ".join(map(preparer.quote, names))
        marks = ", ".join("?" for _ in names)
        return f"INSERT INTO {preparer.format_table(table)} ({listed}) VALUES ({marks})"
    arrayed = [name for name in names if name not in shared]
    if not arrayed:
        raise ValueError(f"{table.name}: every column shared, the row count would be lost")
    listed = ", ".join(map(preparer.quote, [*shared, *arrayed]))

    def placeholder(name: str, suffix: str = "") -> str:
        return f"%b::{table.c[name].type.compile(dialect)}{suffix}"

    values = ", ".join([*map(placeholder, shared), "u.*"])
    arrays = ", ".join(placeholder(name, "[]") for name in arrayed)
    return (
        f"INSERT INTO {preparer.format_table(table)} ({listed}) "
        f"SELECT {values} FROM unnest({arrays}) AS u"
    )


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
        connection.exec_driver_sql(_insert_sql(table, tuple(names), (), dialect), batch)
        count = len(batch)
    else:
        batch = list(rows)
        connection.execute(table.insert(), batch)
        count = len(batch)
    return count
