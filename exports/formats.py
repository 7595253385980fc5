"""Write one table as CSV, SAS transport (XPT v5) or Parquet, byte for byte reproducibly."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

from exports.columns import column_mapper
from exports.variables import LABEL_MAX, Variable, short_names

FORMATS = ("csv", "xpt", "parquet")
EXTENSIONS = {"csv": "csv", "xpt": "xpt", "parquet": "parquet"}
# A cell a spreadsheet would run as a formula starts with one of these (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XPT_TEXT_MAX = 200  # SAS v5 character variables hold at most 200 bytes
PARQUET_ROW_GROUP = 20_000


def _text(value) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _instant(value: datetime) -> str:
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


CSV_CHUNK_ROWS = 2000
TEXT_MEMO_MAX = 10_000


class _TextCells(dict):
    """A text column's cells as CSV text, remembered: ids, codes and terms repeat down a
    column, so most cells are one dictionary lookup. Emptied when it grows large (free text)."""

    def __missing__(self, value):
        if len(self) >= TEXT_MEMO_MAX:
            self.clear()
        text = self[value] = csv_cell(value)
        return text


def _csv_converter(variable: Variable):
    """What a column needs beyond the csv module's own conversions (None as "", numbers as
    repr, dates as ISO 8601): text neutralised, true/false, instants in ISO 8601 UTC."""
    if variable.type == "string":
        return _TextCells().__getitem__
    if variable.type in ("boolean", "datetime"):
        return csv_cell
    return None


def write_csv(
    binary, variables: tuple[Variable, ...], rows: Iterable[tuple], *, header: bool = True
) -> int:
    """RFC 4180: a header row (unless ``header`` is false: a range of a file), CRLF line
    ends, quotes only where needed.

    The csv module writes a chunk of rows at a time into a StringIO, whose text then goes
    out as one UTF-8 block: memory holds one chunk, and no Python call is made per row
    beyond the cell conversion."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    convert = column_mapper([_csv_converter(v) for v in variables])

    def flush() -> None:
        binary.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    if header:
        writer.writerow([v.name for v in variables])
        flush()
    rows, count = iter(rows), 0
    while chunk := list(islice(rows, CSV_CHUNK_ROWS)):
        writer.writerows(map(convert, chunk) if convert else chunk)
        count += len(chunk)
        flush()
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
    """SAS transport v5 through pyreadstat. Names are the dictionary's short names; the
    header's creation stamps are set to the cut-off, so the file is reproducible."""
    import pandas as pd
    import pyreadstat

    shorts = short_names([v.name for v in variables])
    data = {shorts[v.name]: [] for v in variables}
    count = 0
    for row in rows:
        count += 1
        for v, value in zip(variables, row, strict=True):
            data[shorts[v.name]].append(_xpt_value(v, value))
    frame = pd.DataFrame(data, columns=list(data))
    for v in variables:
        column = shorts[v.name]
        if v.type in ("integer", "number", "boolean"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
        elif v.type == "date":
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.xpt"
        pyreadstat.write_xport(
            frame,
            str(path),
            file_label=label[:LABEL_MAX],
            column_labels=[v.label for v in variables],
            table_name=table_name.upper()[:8],
            file_format_version=5,
        )
        content = path.read_bytes()
    head_end = content.find(b"HEADER RECORD*******OBS")
    fixed = stamp.astimezone(UTC).strftime("%d%b%y:%H:%M:%S").upper().encode()
    binary.write(XPT_STAMP.sub(fixed, content[:head_end]) + content[head_end:])
    return count


def _xpt_value(variable: Variable, value):
    if value is None:
        return "" if variable.type in ("string",) else None
    if variable.type == "boolean":
        return 1.0 if value else 0.0
    if variable.type == "string":
        return str(value)[:XPT_TEXT_MAX]
    return value


def _copy(path: Path, binary) -> None:
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            binary.write(block)
