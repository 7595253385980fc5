"""Refuse a change made from another version of a record than the one it is at (412).

A record's ``version`` is its ETag: a correction or an entered-in-error mark sent from the
version the client read is refused once another change got there first, so nobody
overwrites what they never saw. The refusal names the current value of each field sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trial.audit.services import encode_value
from trial.errors import TrialError

MAX_VERSION = 2**31 - 1  # the version column's range on PostgreSQL


class PreconditionFailed(TrialError):
    """The record is no longer at the version the change was made from (412)."""

    status, code = 412, "precondition_failed"


def etag(version: int) -> str:
    """The ETag of a record at ``version`` (strong: ``If-Match`` compares it as sent back)."""
    return f'"{version}"'


def check_version(record, expected_version: int | None, current: Mapping[str, Any]) -> None:
    """Refuse a change made from another version than the record's (412); ``None``: no check.

    The error names the record's version and the current value of each field the request
    tried to change (``current``: request key -> value now), so the client can see what it
    would have overwritten. The caller holds the record's row (``get_visible_record(...,
    lock=True)``) so the version cannot move between this check and the write.
    """
    if expected_version is None or record.version == expected_version:
        return
    name = f"{record.ENTITY.replace('_', ' ')} {record.entity_id}"
    errors = {
        "version": [
            f"The record is at version {record.version}, not {expected_version}: it changed "
            f"since you read it."
        ]
    }
    for key, value in current.items():
        shown = encode_value(value)
        errors[key] = [f"Now {'null' if shown is None else shown}."]
    raise PreconditionFailed(
        f"{name[0].upper()}{name[1:]} changed since version {expected_version}: it is at "
        f"version {record.version} (ETag {etag(record.version)}). Nothing was saved; read it "
        f"again and make the correction on what it holds now.",
        errors,
    )
