"""The files of the blinded bundle: their variables and their rows at the cut-off.

Rows are ordered by participant id (site code and registration number) and then by a
clinical key (schedule order, date, term): never by anything that follows the
randomization list. No file carries an arm, a dose in mg, a kit-to-arm link or a lot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import groupby, repeat
from operator import itemgetter, sub

from exports import outcomes
from exports.context import Context, RowSpool, rows_as_of
from exports.variables import Variable as V
from randomization.strata import stratum_key
from trial.conduct.models import DEVIATION_CATEGORIES, DISPOSITIONS, ProtocolDeviation
from trial.dosing.models import DosingRecord
from trial.forms.models import (
    CIWA_ITEMS,
    LAB_UNITS,
    OCDS_ITEMS,
    CiwaAssessment,
    DrinkingDay,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.safety.models import (
    ACTIONS_TAKEN,
    OUTCOMES,
    RELATEDNESS,
    SERIOUSNESS_CRITERIA,
    AdverseEvent,
    criterion_column,
)
from trial.visits.models import Visit


@dataclass(frozen=True)
class Table:
    name: str
    label: str
    variables: tuple[V, ...]
    rows: Callable[[Context], Iterator[tuple]]
    # A record file: its rows follow the database's order of participant ids and read only
    # the context's participant range, so it can be written range by range (exports.helpers).
    splits: bool = False


def _join(values) -> str:
    return ", ".join(values)


PID = V("participant_id", "Participant identifier", "string", origin="assigned")
VISIT_CODE = V("visit_code", "Visit", "string", origin="entered")
VISIT_DATE = V("visit_date", "Visit date", "date")


def by_participant(ctx: Context, model, fields: list[str], order: Callable):
    """A record table at the cut-off as (participant facts, that participant's rows sorted
    by ``order``), participant by participant in id order. Rows are
    ``(id, participant_row_id, *fields)``."""
    participants = ctx.participants
    rows = rows_as_of(ctx.cut, model, fields, ctx.part)
    for row_id, group in groupby(rows, key=itemgetter(1)):
        facts = participants.get(row_id)
        if facts is not None:
            yield facts, sorted(group, key=order)


def _visit_forms(ctx: Context, model, fields: list[str], derived: Callable | None = None):
    """Rows of a form entered with a visit: participant, visit, visit date, items, scores.
    ``derived`` takes the items (``fields``, in order) and returns the derived values."""
    visits, visit_order = ctx.visits, ctx.visit_order

    def schedule_order(row):
        visit = visits.get(row[2])
        return visit_order.get(visit.visit_code if visit else "", 999), row[0]

    for facts, rows in by_participant(ctx, model, ["visit_id", *fields], schedule_order):
        for row in rows:
            visit = visits.get(row[2])
            if visit is not None:
                items = tuple(row[3:])
                yield (
                    (facts.participant_id, visit.visit_code, visit.visit_date)
                    + items
                    + (derived(items) if derived else ())
                )


# --- participants --------------------------------------------------------------------------


def participant_variables(ctx_protocol) -> tuple[V, ...]:
    return (
        PID,
        V("site", "Site code", "string"),
        V("sex", "Sex", "string", allowed="F, M"),
        V("year_of_birth", "Year of birth", "integer"),
        V("consent_date", "Date of informed consent", "date"),
        V(
            "stratum",
            "Randomization stratum",
            "string",
            origin="derived",
            derivation="The protocol's strata factors joined as factor=value|factor=value.",
        ),
        V("randomization_number", "Randomization number", "string", origin="assigned"),
        V("kit_number", "Study drug kit number", "string", origin="assigned"),
        V(
            "randomization_date",
            "Randomization date (study day 0)",
            "date",
            origin="derived",
            derivation="The site-local calendar date of the randomization instant.",
        ),
        V(
            "first_dose_date",
            "First dose date",
            "date",
            origin="derived",
            derivation="Earliest dosing record with at least one tablet per day.",
        ),
        V("disposition", "Final disposition", "string", allowed=_join(DISPOSITIONS)),
        V("disposition_date", "Disposition date", "date"),
        V("disposition_reason", "Disposition reason", "string"),
        V(
            "safety_population",
            "In the safety population",
            "boolean",
            origin="derived",
            derivation="Randomized with a recorded first dose.",
        ),
        V(
            "unblinded_by_code_break",
            "Emergency code-break recorded",
            "boolean",
            origin="derived",
            derivation="True when an emergency code-break was recorded by the cut-off.",
        ),
    )


def participant_rows(ctx: Context) -> Iterator[tuple]:
    for p in ctx.ordered_participants():
        randomized = p.randomization_number is not None
        yield (
            p.participant_id,
            p.site,
            p.sex,
            p.year_of_birth,
            p.consent_date,
            stratum_key(ctx.protocol, site=p.site, sex=p.sex),
            p.randomization_number,
            p.kit_number,
            p.randomization_date,
            p.first_dose_date,
            p.disposition,
            p.disposition_date,
            p.disposition_reason,
            randomized and p.first_dose_date is not None,
            bool(p.unblinded),
        )


# --- visits and forms ----------------------------------------------------------------------

STUDY_DAY = "Date minus the randomization date (day 0); empty before randomization."


def visit_rows(ctx: Context) -> Iterator[tuple]:
    fields = ["visit_code", "visit_date", "status", "missed_reason"]
    order = lambda r: (ctx.visit_order.get(r[2], 999), r[0])  # noqa: E731
    for facts, rows in by_participant(ctx, Visit, fields, order):
        for _, _, code, day, status, missed_reason in rows:
            yield (facts.participant_id, code, day, facts.study_day(day), status, missed_reason)


def drinking_rows(ctx: Context) -> Iterator[tuple]:
    """The calendar, read once for two files: while its rows stream out, each participant's
    drinking outcomes are computed and spooled to a temporary file for ``outcome_rows``.

    A participant's rows are turned into columns and the derived columns are mapped over
    them (``map`` and ``zip`` loop in C): this is the largest file of a bundle, and a
    Python loop per calendar day was a third of the whole bundle's time."""
    visit_codes = {row_id: visit.visit_code for row_id, visit in ctx.visits.items()}
    grams = _DrinkGrams(ctx.protocol.standard_drink_grams)
    spool = RowSpool()
    fields = ["visit_id", "day", "standard_drinks"]
    by_day = itemgetter(3, 0)  # day, then entry
    for facts, rows in by_participant(ctx, DrinkingDay, fields, by_day):
        _, _, visit_ids, days, drinks = zip(*rows, strict=True)
        start = facts.randomization_date
        if start is None:
            study_days = repeat(None)
        else:
            study_days = map(sub, map(date.toordinal, days), repeat(start.toordinal()))
        yield from zip(
            repeat(facts.participant_id),
            map(visit_codes.get, visit_ids),
            days,
            study_days,
            drinks,
            map(grams.__getitem__, drinks),
        )
        spool.add(facts.row_id, _participant_outcomes(ctx, facts, days, drinks))
    ctx.drinking_outcomes = spool


class _DrinkGrams(dict):
    """Grams of alcohol for a number of drinks, rounded as the outcomes are, remembered: a
    calendar holds few distinct numbers of drinks."""

    def __init__(self, grams_per_drink: float):
        super().__init__()
        self.grams_per_drink = grams_per_drink

    def __missing__(self, drinks: float) -> float:
        weight = self[drinks] = outcomes.round_half_up(drinks * self.grams_per_drink)
        return weight


def _ocds_scores(items: tuple) -> tuple:
    return sum(items), sum(items[:6]), sum(items[6:])


def dosing_rows(ctx: Context) -> Iterator[tuple]:
    fields = ["date", "tablets_per_day", "change_reason", "tablets_returned"]
    for facts, rows in by_participant(ctx, DosingRecord, fields, lambda r: (r[2], r[0])):
        for _, _, day, tablets, reason, returned in rows:
            yield (facts.participant_id, day, facts.study_day(day), tablets, reason, returned)


AE_FIELDS = [
    "term",
    "preferred_term",
    "system_organ_class",
    "coding_source",
    "onset_date",
    "end_date",
    "grade",
    "serious",
    *(criterion_column(c) for c in SERIOUSNESS_CRITERIA),
    "relatedness",
    "action_taken",
    "outcome",
]


def adverse_event_rows(ctx: Context) -> Iterator[tuple]:
    onset = 2 + AE_FIELDS.index("onset_date")
    order = lambda r: (r[onset], r[2], r[0])  # noqa: E731 - onset, verbatim term, entry
    for facts, rows in by_participant(ctx, AdverseEvent, AE_FIELDS, order):
        first_dose = facts.first_dose_date
        for r in rows:
            yield (
                facts.participant_id,
                *r[2 : onset + 1],
                facts.study_day(r[onset]),
                *r[onset + 1 :],
                first_dose is not None and r[onset] >= first_dose,
            )


def deviation_rows(ctx: Context) -> Iterator[tuple]:
    fields = ["category", "description", "date", "automatic", "visit_id"]
    for facts, rows in by_participant(ctx, ProtocolDeviation, fields, lambda r: (r[4], r[0])):
        for _, _, category, description, day, automatic, visit_id in rows:
            visit = ctx.visits.get(visit_id) if visit_id else None
            yield (
                facts.participant_id,
                category,
                description,
                day,
                bool(automatic),
                visit.visit_code if visit else None,
            )


# --- derived drinking outcomes -------------------------------------------------------------

OUTCOME_COLUMNS = (
    "participant_id",
    "period",
    "period_start",
    "period_end",
    "days_in_period",
    "days_assessed",
    "days_missing",
    "pct_heavy_drinking_days",
    "pct_days_abstinent",
    "drinks_per_drinking_day",
    "grams_per_day",
    "who_risk_level",
)


def _participant_outcomes(ctx: Context, facts, dates: Sequence, drinks: Sequence) -> list[tuple]:
    """One participant's outcome rows from its calendar at the cut-off (days in order)."""
    periods = outcomes.periods_for(
        ctx.protocol,
        screening_date=facts.screening_date,
        randomization_date=facts.randomization_date,
        cutoff_date=ctx.cut.cutoff_date,
    )
    return [
        (facts.participant_id, *(result[c] for c in OUTCOME_COLUMNS[1:]))
        for result in outcomes.compute(ctx.protocol, facts.sex, periods, dates, drinks)
    ]


def outcome_rows(ctx: Context) -> Iterator[tuple]:
    """Per participant in the database's order of ids (as the record files, so a helper
    process writes its range of participants: exports.helpers), from the calendar pass
    (run now if no file ran it)."""
    if ctx.drinking_outcomes is None:
        for _ in drinking_rows(ctx):
            pass
    spool = ctx.drinking_outcomes
    batches, pending = iter(spool), {}
    for facts in ctx.participants.values():
        if facts.row_id not in spool.keys:  # no calendar day at the cut-off
            yield from _participant_outcomes(ctx, facts, [], [])
            continue
        while facts.row_id not in pending:  # the spool is in the same order: one ahead
            row_id, rows = next(batches)
            pending[row_id] = rows
        yield from pending.pop(facts.row_id)


def _outcome_variables(protocol) -> tuple[V, ...]:
    heavy = protocol.heavy_drinking_threshold
    levels = "; ".join(
        f"{lvl['level']} <= {lvl['F']} g (F) / {lvl['M']} g (M)" for lvl in protocol.who_risk_levels
    )
    grams = protocol.standard_drink_grams
    return (
        PID,
        V(
            "period",
            "Period",
            "string",
            allowed="baseline, month_1 ... month_6, treatment",
            origin="derived",
            derivation=(
                "baseline: the 28 days before screening (before randomization if no screening "
                "visit); month_k: study days 28(k-1)+1 to 28k; treatment: study days 1 to the "
                "end-of-treatment day. Cut at the cut-off date; no row before a period starts."
            ),
        ),
        V(
            "period_start",
            "First day of the period",
            "date",
            origin="derived",
            derivation="See period.",
        ),
        V(
            "period_end",
            "Last day of the period",
            "date",
            origin="derived",
            derivation="See period.",
        ),
        V(
            "days_in_period",
            "Days in the period",
            "integer",
            "days",
            origin="derived",
            derivation="period_end - period_start + 1.",
        ),
        V(
            "days_assessed",
            "Days with a calendar entry",
            "integer",
            "days",
            origin="derived",
            derivation="Count of drinking-calendar days in the period.",
        ),
        V(
            "days_missing",
            "Days without a calendar entry",
            "integer",
            "days",
            origin="derived",
            derivation="days_in_period - days_assessed.",
        ),
        V(
            "pct_heavy_drinking_days",
            "Heavy drinking days (% assessed)",
            "number",
            "%",
            origin="derived",
            derivation=(
                f"100 x days with >= {heavy['F']} (F) / {heavy['M']} (M) standard drinks / "
                "days_assessed; empty when no day was assessed; 4 decimals, half up."
            ),
        ),
        V(
            "pct_days_abstinent",
            "Days abstinent (% assessed)",
            "number",
            "%",
            origin="derived",
            derivation="100 x days with 0 drinks / days_assessed; empty when none assessed.",
        ),
        V(
            "drinks_per_drinking_day",
            "Drinks per drinking day",
            "number",
            "standard drinks",
            origin="derived",
            derivation="Sum of drinks / days with > 0 drinks; empty when no drinking day.",
        ),
        V(
            "grams_per_day",
            "Alcohol per assessed day",
            "number",
            "g/day",
            origin="derived",
            derivation=f"Sum of drinks x {grams:g} g / days_assessed; empty when none assessed.",
        ),
        V(
            "who_risk_level",
            "WHO drinking risk level",
            "string",
            allowed="abstinent, low, medium, high, very high",
            origin="derived",
            derivation=f"From grams_per_day: abstinent at 0; {levels}; above: very high.",
        ),
    )


def tables(protocol) -> tuple[Table, ...]:
    grams = protocol.standard_drink_grams
    item = lambda name, label, top: V(name, label, "integer", allowed=f"0-{top}")  # noqa: E731
    return (
        Table("participants", "Participants", participant_variables(protocol), participant_rows),
        Table(
            "visits",
            "Visits",
            (
                PID,
                VISIT_CODE,
                VISIT_DATE,
                V(
                    "study_day",
                    "Study day of the visit",
                    "integer",
                    "days",
                    origin="derived",
                    derivation=STUDY_DAY,
                ),
                V("status", "Visit status", "string", allowed="completed, missed"),
                V("missed_reason", "Reason the visit was missed", "string"),
            ),
            visit_rows,
            splits=True,
        ),
        Table(
            "drinking_calendar",
            "Timeline Followback drinking calendar",
            (
                PID,
                V("visit_code", "Visit that collected the day", "string"),
                V("day", "Calendar day", "date"),
                V(
                    "study_day",
                    "Study day",
                    "integer",
                    "days",
                    origin="derived",
                    derivation=STUDY_DAY,
                ),
                V("standard_drinks", "Standard drinks", "number", "standard drinks", "0-60"),
                V(
                    "grams_alcohol",
                    "Grams of alcohol",
                    "number",
                    "g",
                    origin="derived",
                    derivation=f"standard_drinks x {grams:g} g; 4 decimals, half up.",
                ),
            ),
            drinking_rows,
            splits=True,
        ),
        Table(
            "ocds",
            "Obsessive Compulsive Drinking Scale",
            (
                PID,
                VISIT_CODE,
                VISIT_DATE,
                *(item(i, f"OCDS item {i.split('_')[1]}", 4) for i in OCDS_ITEMS),
                V(
                    "total",
                    "OCDS total",
                    "integer",
                    allowed="0-56",
                    origin="derived",
                    derivation="Sum of items 1-14.",
                ),
                V(
                    "obsessive_subscale",
                    "OCDS obsessive subscale",
                    "integer",
                    allowed="0-24",
                    origin="derived",
                    derivation="Sum of items 1-6.",
                ),
                V(
                    "compulsive_subscale",
                    "OCDS compulsive subscale",
                    "integer",
                    allowed="0-32",
                    origin="derived",
                    derivation="Sum of items 7-14.",
                ),
            ),
            lambda ctx: _visit_forms(ctx, OcdsAssessment, list(OCDS_ITEMS), _ocds_scores),
            splits=True,
        ),
        Table(
            "ciwa",
            "CIWA-Ar alcohol withdrawal",
            (
                PID,
                VISIT_CODE,
                VISIT_DATE,
                *(item(i, f"CIWA-Ar {i.replace('_', ' ')}", top) for i, top in CIWA_ITEMS.items()),
                V(
                    "total",
                    "CIWA-Ar total",
                    "integer",
                    allowed="0-67",
                    origin="derived",
                    derivation="Sum of the 10 items.",
                ),
            ),
            lambda ctx: _visit_forms(
                ctx, CiwaAssessment, list(CIWA_ITEMS), lambda items: (sum(items),)
            ),
            splits=True,
        ),
        Table(
            "vitals",
            "Vital signs",
            (
                PID,
                VISIT_CODE,
                VISIT_DATE,
                V("systolic_bp", "Systolic blood pressure", "integer", "mmHg", "60-260"),
                V("diastolic_bp", "Diastolic blood pressure", "integer", "mmHg", "30-160"),
                V("heart_rate", "Heart rate", "integer", "beats/min", "30-220"),
                V("weight_kg", "Weight", "number", "kg", "30-300"),
            ),
            lambda ctx: _visit_forms(
                ctx, Vitals, ["systolic_bp", "diastolic_bp", "heart_rate", "weight_kg"]
            ),
            splits=True,
        ),
        Table(
            "labs",
            "Laboratory results",
            (
                PID,
                VISIT_CODE,
                VISIT_DATE,
                V("test", "Laboratory test", "string", allowed=_join(LAB_UNITS)),
                V("value", "Result", "number"),
                V(
                    "unit",
                    "Unit",
                    "string",
                    allowed=_join(sorted({u for us in LAB_UNITS.values() for u in us})),
                ),
                V("upper_limit_normal", "Upper limit of normal", "number"),
                V(
                    "times_uln",
                    "Result / upper limit of normal",
                    "number",
                    "x ULN",
                    origin="derived",
                    derivation="value / upper_limit_normal (same unit); 4 decimals, half up.",
                ),
            ),
            lambda ctx: _visit_forms(
                ctx,
                LabResult,
                ["test", "value", "unit", "upper_limit_normal"],
                lambda items: (outcomes.round_half_up(items[1] / items[3]),),
            ),
            splits=True,
        ),
        Table(
            "study_drug",
            "Study drug (tablets; identical in both arms)",
            (
                PID,
                V("date", "From this date", "date"),
                V(
                    "study_day",
                    "Study day",
                    "integer",
                    "days",
                    origin="derived",
                    derivation=STUDY_DAY,
                ),
                V("tablets_per_day", "Tablets per day", "integer", "tablets", "0-20"),
                V("change_reason", "Reason for the dose change", "string"),
                V("tablets_returned", "Tablets returned", "integer", "tablets"),
            ),
            dosing_rows,
            splits=True,
        ),
        Table(
            "adverse_events",
            "Adverse events (MedDRA coded)",
            (
                PID,
                V("term", "Verbatim term", "string"),
                V(
                    "preferred_term",
                    "MedDRA preferred term",
                    "string",
                    origin="derived",
                    derivation="Coded from the verbatim term (sponsor dictionary, then built-in).",
                ),
                V(
                    "system_organ_class",
                    "MedDRA primary system organ class",
                    "string",
                    origin="derived",
                    derivation="The preferred term's primary SOC.",
                ),
                V(
                    "coding_source",
                    "Coding source",
                    "string",
                    allowed="builtin, sponsor, uncoded",
                    origin="derived",
                    derivation="Dictionary that coded the term.",
                ),
                V("onset_date", "Onset date", "date"),
                V(
                    "onset_study_day",
                    "Study day of onset",
                    "integer",
                    "days",
                    origin="derived",
                    derivation=STUDY_DAY,
                ),
                V("end_date", "End date", "date"),
                V("grade", "CTCAE grade", "integer", allowed="1-5"),
                V("serious", "Serious", "boolean"),
                *(
                    V(criterion_column(c), f"Serious: {c.replace('_', ' ')}", "boolean")
                    for c in SERIOUSNESS_CRITERIA
                ),
                V("relatedness", "Relatedness to study drug", "string", allowed=_join(RELATEDNESS)),
                V(
                    "action_taken",
                    "Action taken with study drug",
                    "string",
                    allowed=_join(ACTIONS_TAKEN),
                ),
                V("outcome", "Outcome", "string", allowed=_join(OUTCOMES)),
                V(
                    "treatment_emergent",
                    "Treatment-emergent",
                    "boolean",
                    origin="derived",
                    derivation="Onset on or after the first dose date.",
                ),
            ),
            adverse_event_rows,
            splits=True,
        ),
        Table(
            "protocol_deviations",
            "Protocol deviations",
            (
                PID,
                V("category", "Deviation category", "string", allowed=_join(DEVIATION_CATEGORIES)),
                V("description", "Description", "string"),
                V("date", "Date of the deviation", "date"),
                V(
                    "automatic",
                    "Raised by the system",
                    "boolean",
                    origin="derived",
                    derivation="True when raised for a visit outside its window.",
                ),
                V("visit_code", "Visit concerned", "string"),
            ),
            deviation_rows,
            splits=True,
        ),
        Table(
            "drinking_outcomes",
            "Derived drinking outcomes per period",
            _outcome_variables(protocol),
            outcome_rows,
            splits=True,
        ),
    )
