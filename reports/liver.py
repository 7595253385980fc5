"""Liver laboratory abnormalities: peak multiples of ULN after the first dose, Hy's law screen.

Plain ``LabRow``s in, like the rest of the counting engine (``reports.counting``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from reports.counting import ParticipantSet
from reports.rows import LabRow
from trial.safety.definitions import is_treatment_emergent


@dataclass
class LiverFinding:
    participant_id: str
    peak: dict[str, float]  # test -> highest value / ULN on or after the first dose
    hys_law_date: date | None  # first visit with ALT or AST > 3x and bilirubin > 2x ULN


def liver_findings(
    labs: Iterable[LabRow], first_dose: Mapping[str, date | None]
) -> dict[str, LiverFinding]:
    """Peak multiples of ULN per participant after the first dose, and the Hy's law screen."""
    findings: dict[str, LiverFinding] = {}
    by_visit: dict[tuple[str, date], dict[str, float]] = {}
    for lab in labs:
        if not is_treatment_emergent(lab.visit_date, first_dose.get(lab.participant_id)):
            continue
        ratio = lab.value / lab.upper_limit_normal
        finding = findings.setdefault(
            lab.participant_id, LiverFinding(lab.participant_id, {}, None)
        )
        finding.peak[lab.test] = max(ratio, finding.peak.get(lab.test, 0.0))
        by_visit.setdefault((lab.participant_id, lab.visit_date), {})[lab.test] = ratio
    for (pid, day), ratios in sorted(by_visit.items()):
        transaminase = max(ratios.get("ALT", 0.0), ratios.get("AST", 0.0))
        if transaminase > 3 and ratios.get("bilirubin", 0.0) > 2:
            finding = findings[pid]
            if finding.hys_law_date is None:
                finding.hys_law_date = day
    return findings


LIVER_CRITERIA = (
    ("ALT > 3 x ULN", lambda f: f.peak.get("ALT", 0) > 3),
    ("AST > 3 x ULN", lambda f: f.peak.get("AST", 0) > 3),
    ("ALT or AST > 3 x ULN", lambda f: max(f.peak.get("ALT", 0), f.peak.get("AST", 0)) > 3),
    ("Total bilirubin > 2 x ULN", lambda f: f.peak.get("bilirubin", 0) > 2),
    ("Potential Hy's law (same visit)", lambda f: f.hys_law_date is not None),
)


def liver_summary(findings: Mapping[str, LiverFinding]) -> list[ParticipantSet]:
    return [
        ParticipantSet(label, extra={p for p, f in findings.items() if test(f)})
        for label, test in LIVER_CRITERIA
    ]


def flagged_liver(findings: Mapping[str, LiverFinding]) -> list[LiverFinding]:
    return [f for f in findings.values() if any(test(f) for _, test in LIVER_CRITERIA)]
