"""A visit's window: its target date and the earliest and latest dates it may be done."""

from __future__ import annotations

from datetime import date, timedelta

from trial.protocol import VisitDefinition


def window_dates(definition: VisitDefinition, day0: date) -> tuple[date, date, date]:
    """(target, earliest, latest) for a participant randomized on ``day0``."""
    return (
        day0 + timedelta(days=definition.day),
        day0 + timedelta(days=definition.earliest_day),
        day0 + timedelta(days=definition.latest_day),
    )


def in_window(definition: VisitDefinition, day0: date | None, visit_date: date) -> bool:
    if day0 is None:
        return True
    _, earliest, latest = window_dates(definition, day0)
    return earliest <= visit_date <= latest
