"""Which safety reports were generated: read back from the audit trail, where each
generation is one ``report_safety`` event (``reports.pdf.record_release``).

An open report's event holds its SHA-256 and size (it is pooled); a closed report's only a
digest keyed by the server, which reveals nothing about the arms. A page shows the closed
generations only to the roles that may have the closed report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from trial.audit.models import AuditEvent
from trial.extensions import db

ACTION = "report_safety"
SHOWN = 50


@dataclass(frozen=True)
class Generation:
    at: datetime
    username: str | None
    role: str | None
    session: str
    arms: str | None
    cutoff: str
    sha256: str | None  # the open report's; None for a closed one
    keyed_digest: str | None  # the closed report's HMAC-SHA-256


def report_generations(sessions, limit: int = SHOWN) -> list[Generation]:
    """The latest generations of the reports of ``sessions``, newest first."""
    entities = [f"safety_{session}" for session in sessions]
    rows = db.session.scalars(
        select(AuditEvent)
        .where(  # by the entity index (entity_type, entity_id)
            AuditEvent.entity_type == "report",
            AuditEvent.entity_id.in_(entities),
            AuditEvent.action == ACTION,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    )
    found = []
    for row in rows:
        detail = json.loads(row.detail or "{}")
        found.append(
            Generation(
                at=row.occurred_at,
                username=row.username,
                role=row.role,
                session=detail.get("session", ""),
                arms=detail.get("arms"),
                cutoff=detail.get("cutoff", ""),
                sha256=detail.get("sha256"),
                keyed_digest=detail.get("hmac_sha256"),
            )
        )
    return found
