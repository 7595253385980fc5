"""Compute and check the audit hash chain; pure functions, no database access."""

from __future__ import annotations

import hashlib
import json

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


def canonical_payload(row) -> str:
    values = {}
    for column in HASHED_COLUMNS:
        value = getattr(row, column)
        if column == "occurred_at":
            value = value.isoformat(timespec="microseconds")
        values[column] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical_payload(row).encode("utf-8"))
    return digest.hexdigest()
