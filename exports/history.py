"""Who pulled which blinded bundle: read back from the audit trail, where each pull is one
``export_blinded`` event with its cut-off, options and the file's SHA-256.

The bundle holds no arm, so its digest may be shown to anyone who may pull it: it is the
same for every allocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from exports.bundle import ACTION
from trial.audit.models import AuditEvent
from trial.extensions import db

SHOWN = 50


@dataclass(frozen=True)
class Pull:
    at: datetime
    username: str | None
    role: str | None
    cutoff: str
    format: str
    dummy_arms_seed: int | None
    sha256: str | None


def bundle_pulls(user_id: int | None = None, limit: int = SHOWN) -> list[Pull]:
    """The latest pulls, newest first: one user's, or everyone's with ``user_id`` None."""
    # By the entity index (entity_type, entity_id): the trail's few export events, not all.
    query = select(AuditEvent).where(
        AuditEvent.entity_type == "export", AuditEvent.action == ACTION
    )
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    rows = db.session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit))
    pulls = []
    for row in rows:
        detail = json.loads(row.detail or "{}")
        pulls.append(
            Pull(
                at=row.occurred_at,
                username=row.username,
                role=row.role,
                cutoff=detail.get("cutoff", ""),
                format=detail.get("format", ""),
                dummy_arms_seed=detail.get("dummy_arms_seed"),
                sha256=detail.get("sha256"),
            )
        )
    return pulls
