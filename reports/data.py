"""Load what a safety report shows as of a data cut-off, as plain rows (``reports.rows``).

``load_safety_data(cutoff)`` is the one door from the database into the reports: it returns a
``SafetyData`` of dataclasses and nothing else, so the counting engine never touches the ORM.

A cut-off means what it means for the blinded bundle: each record as it stood then, rebuilt
from the audit trail by ``exports.snapshot`` (records entered later left out, later
corrections and withdrawals undone). No arm is read here; the closed report gets arms
separately.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from exports.context import ParticipantFacts, build_context, records_as_of
from exports.snapshot import parse_cutoff, snapshot_at
from reports.rows import (
    AdverseEventRow,
    BlindingRow,
    DeviationRow,
    DoseRow,
    LabRow,
    ParticipantRow,
    SafetyData,
    SiteRow,
    VisitRow,
)
from trial.conduct.models import ProtocolDeviation
from trial.database import utcnow
from trial.dosing.models import DosingRecord
from trial.extensions import db
from trial.forms.models import BlindingAssessment, LabResult
from trial.protocol import current_protocol
from trial.safety.models import CRITERION_COLUMNS, SERIOUSNESS_CRITERIA, AdverseEvent
from trial.sites.models import Site

LIVER_TESTS = ("ALT", "AST", "bilirubin")


def resolve_cutoff(value: str | datetime | None, now: datetime | None = None) -> datetime:
    """The cut-off as an aware UTC instant, parsed by the one parser of cut-offs
    (``exports.snapshot.parse_cutoff``: with a time zone, from 1980 up to now). Without a
    value, now to the whole second (the bundle takes now to the microsecond its manifest
    prints), so the report can print it exactly."""
    now = now or utcnow()
    return parse_cutoff(value, now) or now.replace(microsecond=0).astimezone(UTC)


def load_safety_data(cutoff: datetime) -> SafetyData:
    """Every row a safety report needs, as the data stood at ``cutoff`` (an aware instant,
    not in the future): one snapshot, rewound through the audit trail like the blinded
    bundle (``exports.snapshot``), so a later correction or withdrawal cannot change a
    report of an earlier cut-off."""
    protocol = current_protocol()
    with snapshot_at(cutoff) as cut:
        sites = [
            SiteRow(row.code, row.name, row.planned_enrollment)
            for row in db.session.execute(
                select(Site.code, Site.name, Site.planned_enrollment)
                .where(Site.created_at <= cutoff)
                .order_by(Site.code)
            )
        ]
        ctx = build_context(protocol, cut)
        code = {p.row_id: p.participant_id for p in ctx.participants.values()}
        participants = [_participant(p) for p in ctx.ordered_participants()]
        doses = [
            DoseRow(code[r["participant_row_id"]], r["date"], r["tablets_per_day"])
            for r in records_as_of(cut, DosingRecord, ["date", "tablets_per_day"])
            if r["participant_row_id"] in code
        ]
        data = SafetyData(
            cutoff=cutoff,
            cutoff_date=cutoff.date(),
            sites=sites,
            participants=participants,
            adverse_events=_adverse_events(cut, code),
            doses=doses,
            labs=_labs(ctx, code),
            visits=[
                VisitRow(code[v.participant_row_id], v.visit_code, v.status, v.visit_date)
                for v in ctx.visits.values()
                if v.participant_row_id in code
            ],
            deviations=[
                DeviationRow(
                    code[r["participant_row_id"]], r["category"], r["date"], r["automatic"]
                )
                for r in records_as_of(cut, ProtocolDeviation, ["category", "date", "automatic"])
                if r["participant_row_id"] in code
            ],
            blinding=_blinding(ctx, code),
        )
    return data


def _participant(p: ParticipantFacts) -> ParticipantRow:
    randomized = p.randomization_number is not None
    return ParticipantRow(
        participant_id=p.participant_id,
        site=p.site,
        sex=p.sex,
        year_of_birth=p.year_of_birth,
        consent_date=p.consent_date,
        randomized_on=p.randomization_date if randomized else None,
        first_dose=p.first_dose_date if randomized else None,
        disposition=p.disposition,
        disposition_date=p.disposition_date,
        disposition_reason=p.disposition_reason,
        treatment_stop_date=p.treatment_stop_date,
        unblinded_at=p.unblinded_at,
    )


AE_FIELDS = [
    "term",
    "preferred_term",
    "system_organ_class",
    "onset_date",
    "end_date",
    "grade",
    "serious",
    "relatedness",
    "action_taken",
    "outcome",
    *CRITERION_COLUMNS,
]


def _adverse_events(cut, code: dict[int, str]) -> list[AdverseEventRow]:
    events = []
    for row in records_as_of(cut, AdverseEvent, AE_FIELDS):
        if row["participant_row_id"] not in code:
            continue
        events.append(
            AdverseEventRow(
                participant_id=code[row["participant_row_id"]],
                term=row["term"],
                preferred_term=row["preferred_term"],
                system_organ_class=row["system_organ_class"],
                onset_date=row["onset_date"],
                end_date=row["end_date"],
                grade=row["grade"],
                serious=bool(row["serious"]),
                seriousness_criteria=tuple(
                    name
                    for name, column in zip(SERIOUSNESS_CRITERIA, CRITERION_COLUMNS, strict=True)
                    if row[column]
                ),
                relatedness=row["relatedness"],
                action_taken=row["action_taken"],
                outcome=row["outcome"],
            )
        )
    return events


def _labs(ctx, code: dict[int, str]) -> list[LabRow]:
    rows = []
    fields = ["visit_id", "test", "value", "upper_limit_normal"]
    for r in records_as_of(ctx.cut, LabResult, fields):
        visit = ctx.visits.get(r["visit_id"])
        if (
            r["participant_row_id"] not in code
            or visit is None
            or visit.visit_date is None
            or r["test"] not in LIVER_TESTS
        ):
            continue
        rows.append(
            LabRow(
                code[r["participant_row_id"]],
                visit.visit_date,
                r["test"],
                r["value"],
                r["upper_limit_normal"],
            )
        )
    return rows


def _blinding(ctx, code: dict[int, str]) -> list[BlindingRow]:
    """The blinding assessment's answers as they stood at the cut-off (entered-in-error ones
    left out by ``records_as_of``), each with the visit it was given at and dated by it; an
    answer whose visit is not in the cut (entered in error, or recorded later) is left out,
    as the bundle's file of the answers leaves it out."""
    rows = []
    fields = ["visit_id", "respondent", "guess", "confidence"]
    for r in records_as_of(ctx.cut, BlindingAssessment, fields):
        visit = ctx.visits.get(r["visit_id"])
        if r["participant_row_id"] not in code or visit is None:
            continue
        rows.append(
            BlindingRow(
                code[r["participant_row_id"]],
                visit.visit_code,
                visit.visit_date,
                r["respondent"],
                r["guess"],
                r["confidence"],
            )
        )
    return rows
