"""The bundle's CSV writer writes what the csv module writes, byte for byte.

``exports.formats.write_csv`` builds each line by mapping its columns' remembered
field functions over the row instead of calling the csv module; here the csv module, with
the same cell text (``csv_cell``) and CRLF line ends, is the reference for any table.
No database: pure functions.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports import formats
from exports.formats import csv_cell, write_csv
from exports.variables import Variable

# Any text a database returns (no lone surrogates: neither database stores them).
TEXT = st.text(
    alphabet=st.sampled_from(list("ab ,\"\r\n\t=+-@'é€0.;"))
    | st.characters(blacklist_categories=("Cs",)),
    max_size=12,
)
VALUES = {
    "string": TEXT,
    "integer": st.integers(min_value=-(10**12), max_value=10**12),
    "number": st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, 1e-7, 2.5, 1e22]),
    "boolean": st.booleans(),
    "date": st.dates(),
    "datetime": st.datetimes(timezones=st.just(UTC)),
}


@st.composite
def tables(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=6))
    variables = tuple(Variable(f"v{i}", f"V {i}", kind) for i, kind in enumerate(kinds))
    cell = [st.none() | VALUES[kind] for kind in kinds]
    rows = draw(st.lists(st.tuples(*cell), max_size=30))
    # Repeat some rows, so remembered fields are hit as well as filled.
    rows += draw(st.lists(st.sampled_from(rows), max_size=10)) if rows else []
    return variables, rows


def reference(variables, rows) -> bytes:
    """The csv module's bytes; negative zero is written 0.0 (see the last test)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([v.name for v in variables])
    unsigned_zero = lambda value: value + 0.0 if isinstance(value, float) else value  # noqa: E731
    writer.writerows([[csv_cell(unsigned_zero(value)) for value in row] for row in rows])
    return buffer.getvalue().encode("utf-8")


def written(variables, rows, **options) -> bytes:
    sink = io.BytesIO()
    count = write_csv(sink, variables, iter(rows), **options)
    assert count == len(rows)
    return sink.getvalue()


@settings(max_examples=300, deadline=None)
@given(tables())
def test_any_table_is_written_as_the_csv_module_writes_it(table):
    variables, rows = table
    assert written(variables, rows) == reference(variables, rows)


@settings(max_examples=100, deadline=None)
@given(tables())
def test_without_the_header_the_same_lines_follow(table):
    variables, rows = table
    whole = reference(variables, rows)
    header_end = whole.index(b"\r\n") + 2
    assert written(variables, rows, header=False) == whole[header_end:]


@settings(max_examples=50, deadline=None)
@given(tables())
def test_fields_forgotten_when_the_memory_fills_are_written_the_same(table):
    variables, rows = table
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats, "FIELD_MEMO_MAX", 2)
        assert written(variables, rows) == reference(variables, rows)


def test_a_writer_that_forgot_a_quoting_rule_is_caught():
    """Negative control: the comparison above fails if carriage returns went unquoted."""
    variables = (Variable("a", "A", "string"), Variable("b", "B", "integer"))
    rows = [("two\rlines", 1)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats, "_NEEDS_QUOTES", re.compile(r'[,"\n]'))
        assert written(variables, rows) != reference(variables, rows)
    assert written(variables, rows) == reference(variables, rows)


def test_more_rows_than_a_chunk():
    variables = (Variable("d", "D", "date"), Variable("x", "X", "number"))
    rows = [(date(2026, 1, 1 + i % 28), i / 7) for i in range(formats.CSV_CHUNK_ROWS * 2 + 3)]
    assert written(variables, rows) == reference(variables, rows)


def test_the_declared_type_decides_the_text_in_any_order():
    """Equal values of another numeric type (and -0.0 and 0.0) share a remembered field, so
    the column's type writes them, whichever comes first (negative zero as 0.0); a
    fractional value in an integer column is refused."""
    number = (Variable("n", "N", "number"), Variable("i", "I", "integer"))
    for rows in ([(2.0, 3), (2, 3.0)], [(2, 3.0), (2.0, 3)]):
        assert written(number, rows, header=False) == b"2.0,3\r\n2.0,3\r\n"
    for rows in ([(-0.0, 0), (0.0, 0)], [(0.0, 0), (-0.0, 0)]):
        assert written(number, rows, header=False) == b"0.0,0\r\n0.0,0\r\n"
    flag = (Variable("f", "F", "boolean"), Variable("i", "I", "integer"))
    assert written(flag, [(1, True), (True, 1)], header=False) == b"true,1\r\ntrue,1\r\n"
    with pytest.raises(ValueError, match="integer column"):
        written(number, [(1.0, 2.5)])


def test_formula_text_is_neutralised_and_instants_are_utc():
    variables = (Variable("t", "T", "string"), Variable("w", "W", "datetime"))
    rows = [("=1+1", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)), ("-3", None)]
    assert written(variables, rows, header=False) == (b"'=1+1,2026-05-01T12:00:00Z\r\n'-3,\r\n")
