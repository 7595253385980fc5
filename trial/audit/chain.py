"""Compute and check the audit hash chain; pure functions, no database access."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring

GENESIS_HASH = "0" * 64

HASHED_COLUMNS = (
    "seq",
    "occurred_at",
    "user_id",
    "username",
    "role",
    "user_site",
    "action",
    "entity_type",
    "entity_id",
    "entity_site",
    "field",
    "old_value",
    "new_value",
    "reason",
    "detail",
)

# The payload is the JSON object of the hashed columns, keys sorted, no spaces, UTF-8: what
# json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes. The
# keys are fixed, so the object is a template with one slot per value; filling it is twice
# as fast as json.dumps, which matters when a bulk load or ``audit verify`` hashes millions
# of rows. tests/test_audit_bulk.py checks the two agree.
_SORTED_COLUMNS = tuple(sorted(HASHED_COLUMNS))
_TEMPLATE = "{" + ",".join(f'"{column}":%s' for column in _SORTED_COLUMNS) + "}"


def json_value(value) -> str:
    """One value as json.dumps(value, ensure_ascii=False) writes it."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value, ensure_ascii=False)


def payload_of(values: Mapping) -> str:
    """The canonical payload of a mapping of the hashed columns (``occurred_at`` as text)."""
    return _TEMPLATE % tuple([json_value(values[column]) for column in _SORTED_COLUMNS])


def canonical_payload(row) -> str:
    values = {column: getattr(row, column) for column in HASHED_COLUMNS}
    values["occurred_at"] = values["occurred_at"].isoformat(timespec="microseconds")
    return payload_of(values)


def hash_payload(prev_hash: str, payload: str) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(payload.encode("utf-8"))
    return digest.hexdigest()


def chain_hash(prev_hash: str, row) -> str:
    return hash_payload(prev_hash, canonical_payload(row))
