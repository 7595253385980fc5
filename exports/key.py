"""The randomization key file (participant -> arm): unblinded statistician only, audited."""

from __future__ import annotations

import csv
import hashlib
import io

from randomization.services import allocation_key
from trial.audit.services import record_event


def build_key_csv(actor) -> tuple[bytes, str]:
    """Return the key as CSV bytes and their SHA-256; the release is an audit event."""
    rows = allocation_key(actor)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["participant_id", "randomization_number", "arm"])
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    record_event(
        actor,
        "export_key",
        entity_type="export",
        entity_id="randomization_key",
        detail={"rows": len(rows), "sha256": digest},
    )
    return data, digest
