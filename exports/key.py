"""The randomization key file (participant -> arm): unblinded statistician only, audited.

Nothing about the file that a blinded reader can see depends on the arms: its length is the
same whatever they are (every row is padded to the longest arm name by the last column,
``padding``, spaces only), and its audit event carries the row count and a keyed digest
(``randomization.release``), never the plain SHA-256 that guesses could be tried against.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable

from randomization.outputs import allocation_key
from randomization.release import release_digest
from trial.audit.services import record_event
from trial.protocol import current_protocol

HEADER = ("participant_id", "randomization_number", "arm", "padding")


def _csv_length(value: str) -> int:
    """The length of ``value`` as a CSV field (quotes and doubled quotes included)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="").writerow([value])
    return len(buffer.getvalue())


def key_csv(rows: Iterable[tuple[str, str, str]], arm_names: Iterable[str]) -> bytes:
    """The key file's bytes for ``(participant_id, randomization_number, arm)`` rows."""
    width = max(_csv_length(arm) for arm in arm_names)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    # A space-only field needs no quoting, so each row's length is fixed by the padding.
    writer.writerows(
        (pid, number, arm, " " * (width - _csv_length(arm))) for pid, number, arm in rows
    )
    return buffer.getvalue().encode("utf-8")


def build_key_csv(actor) -> tuple[bytes, str]:
    """Return the key as CSV bytes and their SHA-256 (for the recipient only); the release
    is an audit event with a keyed digest."""
    rows = allocation_key(actor)
    data = key_csv(rows, current_protocol().arms)
    record_event(
        actor,
        "export_key",
        entity_type="export",
        entity_id="randomization_key",
        detail={"rows": len(rows), "hmac_sha256": release_digest(data)},
    )
    return data, hashlib.sha256(data).hexdigest()
