"""The record files read participant by participant: the drinking calendar, study drug,
adverse events and protocol deviations."""

from __future__ import annotations

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
from trial.conduct.models import DEVIATION_CATEGORIES, ProtocolDeviation
from trial.dosing.models import DosingRecord
from trial.forms.models import DrinkingDay
from trial.safety.definitions import TREATMENT_EMERGENT, is_treatment_emergent
from trial.safety.models import (
    ACTIONS_TAKEN,
    OUTCOMES,
    RELATEDNESS,
    SERIOUSNESS_CRITERIA,
    AdverseEvent,
    criterion_column,
)


class _DrinkGrams(dict):
    """Grams of alcohol for a number of drinks, rounded as the outcomes are, remembered: a
    calendar holds few distinct numbers of drinks."""

    def __init__(self, grams_per_drink: float):
        super().__init__()
        self.grams_per_drink = grams_per_drink

    def __missing__(self, drinks: float) -> float:
        weight = self[drinks] = outcomes.round_half_up(drinks * self.grams_per_drink)
        return weight


def _calendar_grams(protocol):
    """The group's grams of alcohol, each day's drinks x its site's grams per drink."""
    by_site = {}

    def values(group):
        site = group.facts.site
        grams = by_site.get(site)
        if grams is None:
            grams = by_site[site] = _DrinkGrams(protocol.grams_per_drink(site))
        return map(grams.__getitem__, group["standard_drinks"])

    return values


def calendar_table(protocol) -> Table:
    per_drink = outcomes.grams_text(protocol)
    return Table(
        "drinking_calendar",
        "Timeline Followback drinking calendar",
        (
            Column(PID, participant_id),
            Column(V("visit_code", "Visit that collected the day", "string"), visit_codes()),
            Column(V("day", "Calendar day", "date"), field("day")),
            study_day_column("study_day", "Study day", "day"),
            Column(
                V(
                    "standard_drinks",
                    "Standard drinks",
                    "number",
                    "standard drinks",
                    f"0-{protocol.max_drinks_per_day}",
                ),
                field("standard_drinks"),
            ),
            Column(
                V(
                    "grams_alcohol",
                    "Grams of alcohol",
                    "number",
                    "g",
                    origin="derived",
                    derivation=(
                        f"standard_drinks x the site's grams per standard drink, {per_drink}; "
                        "4 decimals, half up."
                    ),
                ),
                _calendar_grams(protocol),
            ),
        ),
        record_groups(DrinkingDay, ["visit_id", "day", "standard_drinks"], ("day", "id")),
        splits=True,
        row="one day of a participant's Timeline Followback calendar: the drinks of that day",
        key=("participant_id", "day"),
        joins=("participants", "visits"),
        notes=("visit_code is the visit that collected the day (empty: none in the cut).",),
    )


def study_drug_table() -> Table:
    return Table(
        "study_drug",
        "Study drug (tablets; identical in both arms)",
        (
            Column(PID, participant_id),
            Column(V("date", "From this date", "date"), field("date")),
            study_day_column("study_day", "Study day", "date"),
            Column(
                V("tablets_per_day", "Tablets per day", "integer", "tablets", "0-20"),
                field("tablets_per_day"),
            ),
            Column(
                V("change_reason", "Reason for the dose change", "string"), field("change_reason")
            ),
            Column(
                V("tablets_returned", "Tablets returned", "integer", "tablets"),
                field("tablets_returned"),
            ),
        ),
        record_groups(
            DosingRecord,
            ["date", "tablets_per_day", "change_reason", "tablets_returned"],
            ("date", "id"),
        ),
        splits=True,
        row=(
            "one dose level of a participant: the tablets per day from this date until the "
            "next row's date"
        ),
        key=("participant_id", "date"),
        joins=("participants",),
    )


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


def _treatment_emergent(group: Group):
    first_dose = group.facts.first_dose_date
    return (is_treatment_emergent(onset, first_dose) for onset in group["onset_date"])


def adverse_events_table() -> Table:
    def entered(variable: V) -> Column:
        return Column(variable, field(variable.name))

    columns = (
        Column(PID, participant_id),
        entered(V("term", "Verbatim term", "string")),
        entered(
            V(
                "preferred_term",
                "MedDRA preferred term",
                "string",
                origin="derived",
                derivation="Coded from the verbatim term (sponsor dictionary, then built-in).",
            )
        ),
        entered(
            V(
                "system_organ_class",
                "MedDRA primary system organ class",
                "string",
                origin="derived",
                derivation="The preferred term's primary SOC.",
            )
        ),
        entered(
            V(
                "coding_source",
                "Coding source",
                "string",
                allowed="builtin, sponsor, uncoded",
                origin="derived",
                derivation="Dictionary that coded the term.",
            )
        ),
        entered(V("onset_date", "Onset date", "date")),
        study_day_column("onset_study_day", "Study day of onset", "onset_date"),
        entered(V("end_date", "End date", "date")),
        entered(V("grade", "CTCAE grade", "integer", allowed="1-5")),
        entered(V("serious", "Serious", "boolean")),
        *(
            entered(V(criterion_column(c), f"Serious: {c.replace('_', ' ')}", "boolean"))
            for c in SERIOUSNESS_CRITERIA
        ),
        entered(
            V("relatedness", "Relatedness to study drug", "string", allowed=one_of(RELATEDNESS))
        ),
        entered(
            V(
                "action_taken",
                "Action taken with study drug",
                "string",
                allowed=one_of(ACTIONS_TAKEN),
            )
        ),
        entered(V("outcome", "Outcome", "string", allowed=one_of(OUTCOMES))),
        Column(
            V(
                "treatment_emergent",
                "Treatment-emergent",
                "boolean",
                origin="derived",
                derivation=f"{TREATMENT_EMERGENT.capitalize()} date.",
            ),
            _treatment_emergent,
        ),
    )
    return Table(
        "adverse_events",
        "Adverse events (MedDRA coded)",
        columns,
        record_groups(AdverseEvent, AE_FIELDS, ("onset_date", "term", "id")),
        splits=True,
        row="one adverse event of a participant",
        no_key=(
            "none: a participant may report the same term twice with the same onset; rows "
            "are in order of participant_id, onset_date, term and entry"
        ),
        joins=("participants",),
    )


def deviations_table() -> Table:
    return Table(
        "protocol_deviations",
        "Protocol deviations",
        (
            Column(PID, participant_id),
            Column(
                V("category", "Deviation category", "string", allowed=one_of(DEVIATION_CATEGORIES)),
                field("category"),
            ),
            Column(V("description", "Description", "string"), field("description")),
            Column(V("date", "Date of the deviation", "date"), field("date")),
            Column(
                V(
                    "automatic",
                    "Raised by the system",
                    "boolean",
                    origin="derived",
                    derivation="True when raised for a visit outside its window.",
                ),
                each(bool, "automatic"),
            ),
            Column(V("visit_code", "Visit concerned", "string"), visit_codes()),
        ),
        record_groups(
            ProtocolDeviation,
            ["category", "description", "date", "automatic", "visit_id"],
            ("date", "id"),
        ),
        splits=True,
        row="one protocol deviation of a participant",
        no_key=(
            "none: a participant may have several deviations of one category on one date; "
            "rows are in order of participant_id, date and entry"
        ),
        joins=("participants", "visits"),
        notes=("visit_code is the visit concerned (empty: the deviation is not about a visit).",),
    )
