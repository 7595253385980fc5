"""The participants file: one row per participant, from the facts of the cut."""

from __future__ import annotations

from collections.abc import Iterator

from exports.context import Context
from exports.tables.declaration import Column, Group, Table, fact, one_of
from exports.variables import Variable as V
from randomization.strata import stratum_key
from trial.conduct.models import DISPOSITIONS
from trial.safety.definitions import SAFETY_POPULATION, in_safety_population

PID = V("participant_id", "Participant identifier", "string", origin="assigned")


def participant_groups(ctx: Context) -> Iterator[Group]:
    """Every participant of the cut, in order of participant id: one group."""
    participants = ctx.ordered_participants()
    if participants:
        yield Group(ctx, None, ["facts"], [(p,) for p in participants])


def _stratum(group: Group):
    protocol = group.ctx.protocol
    return (stratum_key(protocol, site=p.site, sex=p.sex) for p in group["facts"])


def _safety_population(group: Group):
    return (
        in_safety_population(p.randomization_number is not None, p.first_dose_date)
        for p in group["facts"]
    )


def _code_broken(group: Group):
    return (bool(p.unblinded) for p in group["facts"])


def participants_table() -> Table:
    return Table(
        "participants",
        "Participants",
        (
            Column(PID, fact("participant_id")),
            Column(V("site", "Site code", "string"), fact("site")),
            Column(V("sex", "Sex", "string", allowed="F, M"), fact("sex")),
            Column(V("year_of_birth", "Year of birth", "integer"), fact("year_of_birth")),
            Column(V("consent_date", "Date of informed consent", "date"), fact("consent_date")),
            Column(
                V(
                    "stratum",
                    "Randomization stratum",
                    "string",
                    origin="derived",
                    derivation="The protocol's strata factors joined as factor=value|factor=value.",
                ),
                _stratum,
            ),
            Column(
                V("randomization_number", "Randomization number", "string", origin="assigned"),
                fact("randomization_number"),
            ),
            Column(
                V("kit_number", "Study drug kit number", "string", origin="assigned"),
                fact("kit_number"),
            ),
            Column(
                V(
                    "randomization_date",
                    "Randomization date (study day 0)",
                    "date",
                    origin="derived",
                    derivation="The site-local calendar date of the randomization instant.",
                ),
                fact("randomization_date"),
            ),
            Column(
                V(
                    "first_dose_date",
                    "First dose date",
                    "date",
                    origin="derived",
                    derivation="Earliest dosing record with at least one tablet per day.",
                ),
                fact("first_dose_date"),
            ),
            Column(
                V("disposition", "Final disposition", "string", allowed=one_of(DISPOSITIONS)),
                fact("disposition"),
            ),
            Column(V("disposition_date", "Disposition date", "date"), fact("disposition_date")),
            Column(
                V("disposition_reason", "Disposition reason", "string"),
                fact("disposition_reason"),
            ),
            Column(
                V("treatment_stop_date", "Study drug discontinued on", "date"),
                fact("treatment_stop_date"),
            ),
            Column(
                V("treatment_stop_reason", "Why study drug was discontinued", "string"),
                fact("treatment_stop_reason"),
            ),
            Column(
                V(
                    "safety_population",
                    "In the safety population",
                    "boolean",
                    origin="derived",
                    derivation=f"{SAFETY_POPULATION.capitalize()}.",
                ),
                _safety_population,
            ),
            Column(
                V(
                    "unblinded_by_code_break",
                    "Emergency code-break recorded",
                    "boolean",
                    origin="derived",
                    derivation="True when an emergency code-break was recorded by the cut-off.",
                ),
                _code_broken,
            ),
        ),
        participant_groups,
        row="one participant registered by the cut-off (randomized or not)",
        key=("participant_id",),
    )
