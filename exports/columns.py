"""Per-column conversion of rows, compiled once: it runs for every row of a bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _compile(template: str, converters: Sequence[Callable | None]):
    """``template`` with ``{cells}`` replaced by each column's cell expression; the source
    holds column positions only (the converters are passed as names), never data."""
    names = {f"convert{i}": c for i, c in enumerate(converters) if c is not None}
    cells = [
        f"convert{i}(row[{i}])" if c is not None else f"row[{i}]" for i, c in enumerate(converters)
    ]
    return eval(template.replace("{cells}", ", ".join(cells)), names)  # noqa: S307 - built here


def column_mapper(converters: Sequence[Callable | None]) -> Callable[[tuple], tuple] | None:
    """One function applying each column's converter (None: left as is), or None when no
    column has one. A row costs one call rather than one per column."""
    if not any(converters):
        return None
    return _compile("lambda row: ({cells},)", converters)


def line_maker(fields: Sequence[Callable], separator: str, end: str) -> Callable[[tuple], str]:
    """One function making a row's line of text: each column's ``fields`` function gives
    its text, joined by ``separator`` and followed by ``end`` (one f-string per row)."""
    slots = separator.join(f"{{convert{i}(row[{i}])}}" for i in range(len(fields)))
    return _compile(f"lambda row: f{slots + end!r}", fields)
