"""Per-column conversion of rows, compiled once: it runs for every row of a bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def column_mapper(converters: Sequence[Callable | None]) -> Callable[[tuple], tuple] | None:
    """One function applying each column's converter (None: left as is), or None when no
    column has one.

    It is compiled from the column positions alone (its source holds nothing else), so a
    row costs one call rather than one per column.
    """
    if not any(converters):
        return None
    names = {f"convert{i}": c for i, c in enumerate(converters) if c is not None}
    cells = [
        f"convert{i}(row[{i}])" if c is not None else f"row[{i}]" for i, c in enumerate(converters)
    ]
    return eval(f"lambda row: ({', '.join(cells)},)", names)  # noqa: S307 - built above
