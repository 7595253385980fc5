"""Per-column conversion of rows: it runs for every row of a bundle, so each row is one
``map`` over its columns (a loop in C) rather than a Python loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import call


def _unchanged(value):
    return value


def column_mapper(converters: Sequence[Callable | None]) -> Callable[[tuple], tuple] | None:
    """One function applying each column's converter (None: left as is), or None when no
    column has one."""
    if not any(converters):
        return None
    functions = tuple(c or _unchanged for c in converters)

    def convert(row: tuple) -> tuple:
        return tuple(map(call, functions, row))

    return convert


def line_maker(fields: Sequence[Callable], separator: str) -> Callable[[tuple], str]:
    """One function making a row's line of text (without its end): each column's ``fields``
    function gives its text, joined by ``separator``."""
    functions = tuple(fields)
    join = separator.join

    def line(row: tuple) -> str:
        return join(map(call, functions, row))

    return line
