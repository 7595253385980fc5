"""The visits file and the forms entered with a visit (OCDS, CIWA-Ar, vitals, labs, the
blinding assessment)."""

from __future__ import annotations

from dataclasses import replace
from itertools import repeat

from exports import outcomes
from exports.tables.declaration import (
    Column,
    Group,
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
    BLINDING_CONFIDENCE,
    BLINDING_RESPONDENTS,
    CIWA_ITEMS,
    DONT_KNOW,
    LAB_UNITS,
    OCDS_COMPULSIVE,
    OCDS_ITEM_MAX,
    OCDS_ITEMS,
    OCDS_OBSESSIVE,
    VITALS_RANGES,
    BlindingAssessment,
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


def _form_table(
    name,
    label,
    model,
    items: list[Column],
    derived: tuple[Column, ...] = (),
    *,
    row: str,
    key: tuple[str, ...] = ("participant_id", "visit_code"),
    leading: tuple[Column, ...] = (),
    within_visit: dict[str, callable] | None = None,
    notes: tuple[str, ...] = (),
):
    """A form entered with a visit: participant, visit, visit date, its items, its scores;
    in schedule order (rows of a visit not in the cut are left out). ``leading``: columns
    between the participant and the visit; ``within_visit``: the fields (each with its
    rank) that order a visit's rows, before the order of entry."""
    fields = [column.variable.name for column in items]
    within = within_visit or {}
    return Table(
        name,
        label,
        (
            Column(PID, participant_id),
            *leading,
            Column(V("visit_code", "Visit", "string"), visit_codes()),
            Column(V("visit_date", "Visit date", "date"), _visit_date),
            *items,
            *derived,
        ),
        record_groups(
            model,
            ["visit_id", *fields],
            ("visit_id", *within, "id"),
            rank={"visit_id": _visit_rank, **within},
            known_visits_only=True,
        ),
        splits=True,
        row=row,
        key=key,
        joins=("participants", "visits"),
        notes=notes,
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
        row="one visit of a participant (completed or missed), in schedule order",
        key=("participant_id", "visit_code"),
        joins=("participants",),
    )


def _ocds_number(item: str) -> str:
    return item.split("_")[1]


def _ocds_score(name: str, label: str, items: tuple[str, ...]) -> Column:
    """A score summed over a run of OCDS items (trial.forms.models, their one home)."""
    span = f"{_ocds_number(items[0])}-{_ocds_number(items[-1])}"
    variable = V(
        name,
        label,
        "integer",
        allowed=f"0-{OCDS_ITEM_MAX * len(items)}",
        origin="derived",
        derivation=f"Sum of items {span}.",
    )
    return Column(variable, _sum_of(items))


def ocds_table() -> Table:
    items = [_item(i, f"OCDS item {_ocds_number(i)}", OCDS_ITEM_MAX) for i in OCDS_ITEMS]
    return _form_table(
        "ocds",
        "Obsessive Compulsive Drinking Scale",
        OcdsAssessment,
        items,
        (
            _ocds_score("total", "OCDS total", OCDS_ITEMS),
            _ocds_score("obsessive_subscale", "OCDS obsessive subscale", OCDS_OBSESSIVE),
            _ocds_score("compulsive_subscale", "OCDS compulsive subscale", OCDS_COMPULSIVE),
        ),
        row="one OCDS questionnaire: its 14 items and scores, at one visit",
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
                    allowed=f"0-{sum(CIWA_ITEMS.values())}",
                    origin="derived",
                    derivation=f"Sum of the {len(CIWA_ITEMS)} items.",
                ),
                _sum_of(CIWA_ITEMS),
            ),
        ),
        row="one CIWA-Ar assessment: its items and total, at one visit",
    )


def vitals_table() -> Table:
    def entered(variable: V) -> Column:
        """With its range from trial.forms.models, the range the API and database hold it to."""
        low, high = VITALS_RANGES[variable.name]
        return Column(replace(variable, allowed=f"{low}-{high}"), field(variable.name))

    return _form_table(
        "vitals",
        "Vital signs",
        Vitals,
        [
            entered(V("systolic_bp", "Systolic blood pressure", "integer", "mmHg")),
            entered(V("diastolic_bp", "Diastolic blood pressure", "integer", "mmHg")),
            entered(V("heart_rate", "Heart rate", "integer", "beats/min")),
            entered(V("weight_kg", "Weight", "number", "kg")),
        ],
        row="one set of vital signs, at one visit",
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
        row="one laboratory test's result at one visit",
        key=("participant_id", "visit_code", "test"),
    )


# --- the blinding assessment ------------------------------------------------------------------

_RESPONDENT_ORDER = {respondent: index for index, respondent in enumerate(BLINDING_RESPONDENTS)}


def _respondent_rank(_ctx, respondent):
    """The protocol's order of respondents (participant, then investigator): a fixed order
    that owes nothing to the answer or to the arm."""
    return _RESPONDENT_ORDER.get(respondent, len(_RESPONDENT_ORDER))


def _site(group: Group):
    return repeat(group.facts.site, group.size)


def blinding_table() -> Table:
    """The guesses of the arm (trial.forms.models.BlindingAssessment), one row each.

    A guess is what someone believed, never the allocation: the file is read from the
    captured records alone, like every other form, and nothing in it (values, order, count)
    comes from the randomization list. The dictionary states the guess's values without
    naming the arms (the protocol names them): the bundle names an arm only where someone
    wrote one down as a guess.
    """
    return _form_table(
        "blinding_assessments",
        "Blinding assessment (guesses of the arm)",
        BlindingAssessment,
        [
            Column(
                V(
                    "respondent",
                    "Who guessed: participant or investigator",
                    "string",
                    allowed=one_of(BLINDING_RESPONDENTS),
                ),
                field("respondent"),
            ),
            Column(
                V(
                    "guess",
                    "Arm guessed, or dont_know",
                    "string",
                    allowed=(
                        "the name of one of the protocol's arms (as the randomization key "
                        f"names it), or {DONT_KNOW}"
                    ),
                ),
                field("guess"),
            ),
            Column(
                V(
                    "confidence",
                    "Confidence in the guess",
                    "string",
                    allowed=f"{one_of(BLINDING_CONFIDENCE)}; empty when guess is {DONT_KNOW}",
                ),
                field("confidence"),
            ),
        ],
        leading=(Column(V("site", "Site code", "string"), _site),),
        within_visit={"respondent": _respondent_rank},
        row=(
            "one respondent's guess of the participant's arm (or don't know) at one visit, "
            "with its confidence: what the respondent believed, not the allocation"
        ),
        key=("participant_id", "visit_code", "respondent"),
        notes=(
            "Rows are in schedule order, the participant's guess before the investigator's.",
            "The allocation is not in the bundle: compare guesses with arms only once the "
            "randomization key is released, joining it on participant_id.",
            "A guess recorded after the participant's code was broken "
            "(participants.unblinded_by_code_break) may rest on that knowledge.",
        ),
    )
