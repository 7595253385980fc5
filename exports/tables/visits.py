"""The visits file and the forms entered with a visit (OCDS, CIWA-Ar, vitals, labs)."""

from __future__ import annotations

from exports import outcomes
from exports.tables.declaration import (
    Column,
    Table,
    each,
    field,
    one_of,
    participant_id,
    record_groups,
    study_day_column,
    visit_codes,
)
from exports.tables.participants import PID
from exports.variables import Variable as V
from trial.forms.models import (
    CIWA_ITEMS,
    LAB_UNITS,
    OCDS_ITEMS,
    CiwaAssessment,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.visits.models import Visit


def _schedule_rank(ctx, code):
    return ctx.visit_order.get(code, 999)


def _visit_rank(ctx, visit_id):
    visit = ctx.visits.get(visit_id)
    return ctx.visit_order.get(visit.visit_code if visit else "", 999)


def _visit_date(group):
    visits = group.ctx.visits
    return (visits[visit_id].visit_date for visit_id in group["visit_id"])


def _form_table(name, label, model, items: list[Column], derived: tuple[Column, ...] = ()):
    """A form entered with a visit: participant, visit, visit date, its items, its scores;
    in schedule order (rows of a visit not in the cut are left out)."""
    fields = [column.variable.name for column in items]
    return Table(
        name,
        label,
        (
            Column(PID, participant_id),
            Column(V("visit_code", "Visit", "string"), visit_codes()),
            Column(V("visit_date", "Visit date", "date"), _visit_date),
            *items,
            *derived,
        ),
        record_groups(
            model,
            ["visit_id", *fields],
            ("visit_id", "id"),
            rank={"visit_id": _visit_rank},
            known_visits_only=True,
        ),
        splits=True,
    )


def _item(name: str, label: str, top: int) -> Column:
    return Column(V(name, label, "integer", allowed=f"0-{top}"), field(name))


def _sum_of(names) -> callable:
    names = list(names)
    return lambda group: map(sum, zip(*(group[name] for name in names), strict=True))


def visits_table() -> Table:
    return Table(
        "visits",
        "Visits",
        (
            Column(PID, participant_id),
            Column(V("visit_code", "Visit", "string"), field("visit_code")),
            Column(V("visit_date", "Visit date", "date"), field("visit_date")),
            study_day_column("study_day", "Study day of the visit", "visit_date"),
            Column(
                V("status", "Visit status", "string", allowed="completed, missed"),
                field("status"),
            ),
            Column(
                V("missed_reason", "Reason the visit was missed", "string"), field("missed_reason")
            ),
        ),
        record_groups(
            Visit,
            ["visit_code", "visit_date", "status", "missed_reason"],
            ("visit_code", "id"),
            rank={"visit_code": _schedule_rank},
        ),
        splits=True,
    )


def ocds_table() -> Table:
    items = [_item(i, f"OCDS item {i.split('_')[1]}", 4) for i in OCDS_ITEMS]
    return _form_table(
        "ocds",
        "Obsessive Compulsive Drinking Scale",
        OcdsAssessment,
        items,
        (
            Column(
                V(
                    "total",
                    "OCDS total",
                    "integer",
                    allowed="0-56",
                    origin="derived",
                    derivation="Sum of items 1-14.",
                ),
                _sum_of(OCDS_ITEMS),
            ),
            Column(
                V(
                    "obsessive_subscale",
                    "OCDS obsessive subscale",
                    "integer",
                    allowed="0-24",
                    origin="derived",
                    derivation="Sum of items 1-6.",
                ),
                _sum_of(OCDS_ITEMS[:6]),
            ),
            Column(
                V(
                    "compulsive_subscale",
                    "OCDS compulsive subscale",
                    "integer",
                    allowed="0-32",
                    origin="derived",
                    derivation="Sum of items 7-14.",
                ),
                _sum_of(OCDS_ITEMS[6:]),
            ),
        ),
    )


def ciwa_table() -> Table:
    items = [_item(i, f"CIWA-Ar {i.replace('_', ' ')}", top) for i, top in CIWA_ITEMS.items()]
    return _form_table(
        "ciwa",
        "CIWA-Ar alcohol withdrawal",
        CiwaAssessment,
        items,
        (
            Column(
                V(
                    "total",
                    "CIWA-Ar total",
                    "integer",
                    allowed="0-67",
                    origin="derived",
                    derivation="Sum of the 10 items.",
                ),
                _sum_of(CIWA_ITEMS),
            ),
        ),
    )


def vitals_table() -> Table:
    def entered(variable: V) -> Column:
        return Column(variable, field(variable.name))

    return _form_table(
        "vitals",
        "Vital signs",
        Vitals,
        [
            entered(V("systolic_bp", "Systolic blood pressure", "integer", "mmHg", "60-260")),
            entered(V("diastolic_bp", "Diastolic blood pressure", "integer", "mmHg", "30-160")),
            entered(V("heart_rate", "Heart rate", "integer", "beats/min", "30-220")),
            entered(V("weight_kg", "Weight", "number", "kg", "30-300")),
        ],
    )


def _times_uln(value, upper_limit):
    return outcomes.round_half_up(value / upper_limit)


def labs_table() -> Table:
    units = sorted({u for us in LAB_UNITS.values() for u in us})
    return _form_table(
        "labs",
        "Laboratory results",
        LabResult,
        [
            Column(
                V("test", "Laboratory test", "string", allowed=one_of(LAB_UNITS)), field("test")
            ),
            Column(V("value", "Result", "number"), field("value")),
            Column(V("unit", "Unit", "string", allowed=one_of(units)), field("unit")),
            Column(
                V("upper_limit_normal", "Upper limit of normal", "number"),
                field("upper_limit_normal"),
            ),
        ],
        (
            Column(
                V(
                    "times_uln",
                    "Result / upper limit of normal",
                    "number",
                    "x ULN",
                    origin="derived",
                    derivation="value / upper_limit_normal (same unit); 4 decimals, half up.",
                ),
                each(_times_uln, "value", "upper_limit_normal"),
            ),
        ),
    )
