"""Write one table as CSV, SAS transport (XPT v5) or Parquet, byte for byte reproducibly."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

from exports.columns import line_maker
from exports.variables import (
    XPT_FORMATS,
    Variable,
    sas_date,
    sas_datetime,
    short_names,
    xpt_label,
)

FORMATS = ("csv", "xpt", "parquet")
EXTENSIONS = {"csv": "csv", "xpt": "xpt", "parquet": "parquet"}
# A cell a spreadsheet would run as a formula starts with one of these (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XPT_TEXT_MAX = 200  # SAS v5 character variables hold at most 200 bytes
PARQUET_ROW_GROUP = 20_000


def _text(value) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _instant(value: datetime) -> str:
    """An instant in UTC with ``Z`` (one without a time zone is UTC, as the database keeps
    instants; ``astimezone`` would take it as the machine's local time)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# By exact type: one dictionary lookup per cell instead of a chain of isinstance checks.
_CELL = {
    str: _text,
    int: int.__repr__,
    float: float.__repr__,
    bool: lambda value: "true" if value else "false",
    date: date.isoformat,
    datetime: _instant,
    type(None): lambda _value: "",
}


def csv_cell(value) -> str:
    """One value as CSV text: ISO 8601 dates, true/false, text neutralised for spreadsheets."""
    format_cell = _CELL.get(type(value))
    return format_cell(value) if format_cell else _text(str(value))


def csv_field(value) -> str:
    """One value as an RFC 4180 field: ``csv_cell``'s text, in double quotes (inner quotes
    doubled) when it holds a comma, a quote or a line break, as the csv module quotes."""
    text = csv_cell(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')
CSV_CHUNK_ROWS = 2000
FIELD_MEMO_MAX = 10_000


def _as_integer(value):
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} in an integer column")
    return int(value)


def _as_number(value) -> float:
    return float(value) + 0.0  # + 0.0: negative zero (equal to zero) is written 0.0


# A column's declared type decides its text: equal values of another numeric type (1, 1.0,
# True) and -0.0 and 0.0 share one remembered field, so they are written alike as the
# declared type, whichever comes first.
_AS_DECLARED = {"integer": _as_integer, "number": _as_number, "boolean": bool}


class _Fields(dict):
    """A column's values as CSV fields, remembered: ids, codes, dates, terms and numbers of
    drinks repeat down a column, so most cells cost one dictionary lookup. Emptied when it
    grows large (free text, measurements)."""

    def __init__(self, declared_type: str):
        super().__init__({None: ""})
        self._as_declared = _AS_DECLARED.get(declared_type)

    def __missing__(self, value) -> str:
        if len(self) >= FIELD_MEMO_MAX:
            self.clear()
            self[None] = ""
        typed = value if self._as_declared is None else self._as_declared(value)
        text = self[value] = csv_field(typed)
        return text


def write_csv(
    binary, variables: tuple[Variable, ...], rows: Iterable[tuple], *, header: bool = True
) -> int:
    """RFC 4180: a header row (unless ``header`` is false: a range of a file), CRLF line
    ends, fields quoted only where needed.

    Each row becomes its line by mapping its columns' remembered fields over it; a chunk of
    lines goes out as one UTF-8 block, so memory holds one chunk. (The csv module did the
    same quoting at three times the cost: tests/test_exports_csv.py checks the bytes
    against it.)"""
    if header:
        names = ",".join(csv_field(v.name) for v in variables)
        binary.write((names + "\r\n").encode("utf-8"))
    fields = [_Fields(v.type).__getitem__ for v in variables]
    if len(fields) == 1:  # an empty field alone would be a blank line, which readers skip
        only = fields[0]
        fields = [lambda value: only(value) or '""']
    line = line_maker(fields, ",")
    rows, count = iter(rows), 0
    while chunk := list(islice(rows, CSV_CHUNK_ROWS)):
        binary.write(("\r\n".join(map(line, chunk)) + "\r\n").encode("utf-8"))
        count += len(chunk)
    return count


def write_parquet(binary, variables: tuple[Variable, ...], rows: Iterable[tuple]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "date": pa.date32(),
        "datetime": pa.timestamp("us", tz="UTC"),
        "boolean": pa.bool_(),
    }
    schema = pa.schema(
        [
            pa.field(v.name, kinds[v.type], metadata={"label": v.label, "unit": v.unit})
            for v in variables
        ]
    )
    count = 0
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.parquet"
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            chunk: list[tuple] = []

            def flush():
                columns = list(zip(*chunk, strict=True)) if chunk else [[] for _ in variables]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                chunk.clear()

            for row in rows:
                chunk.append(row)
                count += 1
                if len(chunk) >= PARQUET_ROW_GROUP:
                    flush()
            if chunk or count == 0:
                flush()
        _copy(path, binary)
    return count


XPT_STAMP = re.compile(rb"\d{2}[A-Z]{3}\d{2}:\d{2}:\d{2}:\d{2}")


def write_xpt(
    binary,
    variables: tuple[Variable, ...],
    rows: Iterable[tuple],
    *,
    table_name: str,
    label: str,
    stamp: datetime,
) -> int:
    """SAS transport v5 through pyreadstat. Names are the dictionary's short names
    (``short_names``: the file's name too), labels cut at a word boundary (``xpt_label``).
    Each column is stored as its variable's type says (``exports.variables``): numbers and
    booleans as numerics, dates as SAS dates (days since 1960-01-01) with ``DATE9.``,
    date-times as SAS datetimes (seconds since 1960, UTC) with ``DATETIME20.``. The header's
    creation stamps are set to the cut-off, so the file is reproducible."""
    import pandas as pd
    import pyreadstat

    shorts = short_names([v.name for v in variables])
    converters = [_XPT_VALUE[v.type] for v in variables]
    columns: list[list] = [[] for _ in variables]
    appends = [column.append for column in columns]
    count = 0
    for row in rows:
        count += 1
        for append, convert, value in zip(appends, converters, row, strict=True):
            append(convert(value))
    data = {}
    for v, values in zip(variables, columns, strict=True):
        if v.type == "string":
            data[shorts[v.name]] = pd.Series(values, dtype=object)
        else:
            data[shorts[v.name]] = pd.Series(values, dtype="float64")
    frame = pd.DataFrame(data, columns=[shorts[v.name] for v in variables])
    sas_formats = {shorts[v.name]: XPT_FORMATS[v.type] for v in variables if v.type in XPT_FORMATS}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.xpt"
        pyreadstat.write_xport(
            frame,
            str(path),
            file_label=xpt_label(label),
            column_labels=[xpt_label(v.label) for v in variables],
            table_name=short_names([table_name])[table_name],
            file_format_version=5,
            variable_format=sas_formats or None,
        )
        content = path.read_bytes()
    head_end = content.find(b"HEADER RECORD*******OBS")
    fixed = stamp.astimezone(UTC).strftime("%d%b%y:%H:%M:%S").upper().encode()
    binary.write(XPT_STAMP.sub(fixed, content[:head_end]) + content[head_end:])
    return count


def xpt_text(value) -> str:
    """Text as an XPT v5 character cell: at most 200 bytes of UTF-8, cut at a character."""
    text = str(value)
    if len(text) * 4 <= XPT_TEXT_MAX:  # a character is at most 4 bytes: no need to encode
        return text
    encoded = text.encode("utf-8")
    if len(encoded) <= XPT_TEXT_MAX:
        return text
    return encoded[:XPT_TEXT_MAX].decode("utf-8", errors="ignore")


def _or_missing(convert):
    return lambda value: None if value is None else convert(value)


# A cell as XPT stores it, by its variable's type: text, or a numeric (None: missing).
_XPT_VALUE = {
    "string": lambda value: "" if value is None else xpt_text(value),
    "integer": _or_missing(float),
    "number": _or_missing(float),
    "boolean": _or_missing(lambda value: 1.0 if value else 0.0),
    "date": _or_missing(sas_date),
    "datetime": _or_missing(sas_datetime),
}


def _copy(path: Path, binary) -> None:
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            binary.write(block)
