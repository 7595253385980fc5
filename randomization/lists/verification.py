"""Verify the stored list: it regenerates from its seed, and allocation followed it."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from randomization.crypto import decrypt_arm
from randomization.generator import Slot, list_digest
from randomization.lists.generation import (
    regenerate_slots,
)
from randomization.models import RandomizationList, RandomizationSlot
from trial.extensions import db
from trial.protocol import current_protocol


@dataclass
class VerifyReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL {message}")

    def good(self, message: str) -> None:
        self.lines.append(f"ok   {message}")


def stored_slots(list_id: int) -> list[Slot]:
    rows = db.session.scalars(select(RandomizationSlot).where(RandomizationSlot.list_id == list_id))
    return [
        Slot(
            r.stratum,
            r.sequence,
            r.block,
            r.block_size,
            decrypt_arm(r.stratum, r.sequence, r.arm_encrypted),
            r.kit_number,
        )
        for r in rows
    ]


def verify() -> VerifyReport:
    """Regenerate generated lists from their seeds, check hashes, and check list order."""
    report = VerifyReport()
    lists = list(db.session.scalars(select(RandomizationList).order_by(RandomizationList.id)))
    if not lists:
        report.fail("no randomization list is loaded")
        return report
    for row in lists:
        params = json.loads(row.parameters)
        stored = stored_slots(row.id)
        arms = tuple(params["arms"])
        digest = list_digest(stored, arms)
        if digest == row.list_sha256:
            report.good(f"list {row.id} ({row.source}, {len(stored)} slots): SHA-256 matches")
        else:
            report.fail(f"list {row.id}: stored slots do not match the recorded SHA-256")
        if row.source == "generated":
            regenerated = regenerate_slots(row, params)
            key = lambda s: (s.stratum, s.sequence)  # noqa: E731
            if sorted(regenerated, key=key) == sorted(stored, key=key):
                report.good(f"list {row.id}: regenerated from its seed, identical")
            else:
                report.fail(f"list {row.id}: regenerating from the seed gives a different list")
    if any(json.loads(row.parameters).get("method") == "minimization" for row in lists):
        _verify_minimization(report)
    else:
        _verify_order(report)
    return report


def _verify_minimization(report: VerifyReport) -> None:
    """Replay every decision and check each allocated kit carries the decided arm."""
    from randomization.crypto import decrypt_json
    from randomization.minimization import Decision, replay
    from randomization.models import MinimizationDecision

    protocol = current_protocol()
    rows = list(
        db.session.scalars(select(MinimizationDecision).order_by(MinimizationDecision.sequence))
    )
    decisions = [Decision.from_json(decrypt_json(row.payload_encrypted)) for row in rows]
    problems = replay(decisions, protocol.ratio)
    if [row.sequence for row in rows] != list(range(1, len(rows) + 1)):
        problems.append("decision sequence numbers have a gap")
    for row, decision in zip(rows, decisions, strict=True):
        slot = db.session.scalar(
            select(RandomizationSlot).where(RandomizationSlot.participant_id == row.participant_id)
        )
        if (
            slot is None
            or decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted) != decision.arm
        ):
            problems.append(f"decision {row.sequence}: the kit given does not match its arm")
    for problem in problems:
        report.fail(problem)
    if not problems:
        report.good(f"all {len(rows)} minimization decisions replay from their draws")


def _verify_order(report: VerifyReport) -> None:
    rows = db.session.execute(
        select(
            RandomizationSlot.stratum,
            RandomizationSlot.sequence,
            RandomizationSlot.randomization_number,
        ).order_by(RandomizationSlot.stratum, RandomizationSlot.sequence)
    )
    by_stratum: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for stratum, sequence, number in rows:
        by_stratum[stratum].append((sequence, number))
    bad = 0
    for stratum, slots in by_stratum.items():
        used = [number for _, number in slots if number is not None]
        flags = [number is not None for _, number in slots]
        if flags != sorted(flags, reverse=True):
            report.fail(f"{stratum}: a slot was skipped (used slots are not the first ones)")
            bad += 1
        elif used != sorted(used):
            report.fail(f"{stratum}: allocations did not follow list order")
            bad += 1
    if not bad:
        report.good(f"allocation order followed the list in all {len(by_stratum)} strata")
