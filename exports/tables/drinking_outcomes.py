"""The derived drinking outcomes per participant and period: a step of its own, reading the
calendar at the cut-off and computing each participant's periods (exports.outcomes)."""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

from exports import outcomes
from exports.context import Context
from exports.tables.declaration import Column, Group, Table, by_participant, participant_id
from exports.tables.participants import PID
from exports.variables import Variable as V
from trial.forms.models import DrinkingDay


def outcome_groups(ctx: Context) -> Iterator[Group]:
    """Per participant in the database's order of ids (as the record files, so a helper
    process writes its range of participants: exports.helpers), its outcome rows; a
    participant without a calendar day at the cut-off is still given its periods."""
    calendar = by_participant(ctx, DrinkingDay, ["day", "standard_drinks"], itemgetter(2, 0))
    upcoming = next(calendar, None)
    for facts in ctx.participants.values():
        days = drinks = ()
        if upcoming is not None and upcoming[0] is facts:  # the same order of ids
            _, _, days, drinks = zip(*upcoming[1], strict=True)
            upcoming = next(calendar, None)
        periods = outcomes.periods_for(
            ctx.protocol,
            screening_date=facts.screening_date,
            randomization_date=facts.randomization_date,
            cutoff_date=ctx.cut.cutoff_date,
        )
        until = outcomes.last_collectable_day(
            ctx.protocol,
            randomization_date=facts.randomization_date,
            cutoff_date=ctx.cut.cutoff_date,
            disposition=facts.disposition,
            disposition_date=facts.disposition_date,
            last_visit_date=facts.last_drinking_visit_date,
        )
        results = outcomes.compute(
            ctx.protocol,
            facts.sex,
            periods,
            days,
            drinks,
            site=facts.site,
            collectable_until=until,
        )
        if results:
            yield Group(ctx, facts, ["result"], [(result,) for result in results])
    if upcoming is not None:
        raise RuntimeError("the calendar and the participants are not in the same order")


def result(name: str):
    """One of ``outcomes.compute``'s values, by name."""
    get = itemgetter(name)
    return lambda group: map(get, group["result"])


def outcomes_table(protocol) -> Table:
    heavy = outcomes.heavy_rule_text(protocol)
    minimum = outcomes.minimum_text(protocol)
    empty = f"empty unless the period has {minimum} (empty_reason says why)"
    levels = "; ".join(
        f"{lvl['level']} <= {lvl['F']} g (F) / {lvl['M']} g (M)" for lvl in protocol.who_risk_levels
    )
    grams = outcomes.grams_text(protocol)
    month = outcomes.PERIOD_DAYS
    months = len(range(1, outcomes.treatment_end_day(protocol) + 1, month))  # as periods_for

    def derived(name, label, kind, unit="", allowed="", derivation="") -> Column:
        variable = V(name, label, kind, unit, allowed, origin="derived", derivation=derivation)
        return Column(variable, result(name))

    return Table(
        "drinking_outcomes",
        "Derived drinking outcomes per period",
        (
            Column(PID, participant_id),
            derived(
                "period",
                "Period",
                "string",
                allowed=f"baseline, month_1 ... month_{months}, treatment",
                derivation=(
                    f"baseline: the {protocol.baseline_days} days before screening (before "
                    f"randomization if no screening visit); month_k: study days {month}(k-1)+1 "
                    f"to {month}k; treatment: study days 1 to the end-of-treatment day. Cut at "
                    "the cut-off date; no row before a period starts."
                ),
            ),
            derived("period_start", "First day of the period", "date", derivation="See period."),
            derived("period_end", "Last day of the period", "date", derivation="See period."),
            derived(
                "days_in_period",
                "Days in the period",
                "integer",
                "days",
                derivation="period_end - period_start + 1.",
            ),
            derived(
                "days_assessed",
                "Days with a calendar entry",
                "integer",
                "days",
                derivation="Count of drinking-calendar days in the period.",
            ),
            derived(
                "days_missing",
                "Days without a calendar entry",
                "integer",
                "days",
                derivation=(
                    "days_in_period - days_not_collectable - days_assessed: the collectable "
                    "days without a calendar entry."
                ),
            ),
            derived(
                "pct_heavy_drinking_days",
                "Heavy drinking days (% assessed)",
                "number",
                "%",
                derivation=(f"100 x {heavy} / days_assessed; {empty}; 4 decimals, half up."),
            ),
            derived(
                "pct_days_abstinent",
                "Days abstinent (% assessed)",
                "number",
                "%",
                derivation=f"100 x days with 0 drinks / days_assessed; {empty}.",
            ),
            derived(
                "drinks_per_drinking_day",
                "Drinks per drinking day",
                "number",
                "standard drinks",
                derivation=(
                    f"Sum of drinks / days with > 0 drinks; empty when no drinking day; {empty}."
                ),
            ),
            derived(
                "grams_per_day",
                "Alcohol per assessed day",
                "number",
                "g/day",
                derivation=(
                    f"Sum of drinks x grams per standard drink at the site, {grams}, / "
                    f"days_assessed; {empty}."
                ),
            ),
            derived(
                "who_risk_level",
                "WHO drinking risk level",
                "string",
                allowed="abstinent, low, medium, high, very high",
                derivation=(
                    f"From grams_per_day: abstinent at 0; {levels}; above: very high; "
                    "empty when grams_per_day is."
                ),
            ),
            derived(
                "days_not_collectable",
                "Days after the last possible collection",
                "integer",
                "days",
                derivation=(
                    "Days of the period neither assessed nor missing: after the participant's "
                    f"final disposition ({', '.join(outcomes.FINAL_DISPOSITIONS)}) on its date, "
                    "or, still in the study, after the day before the latest calendar visit "
                    "recorded or whose window closed before the cut-off day; a day with a "
                    "calendar entry is always collectable; 0 for the baseline."
                ),
            ),
            derived(
                "empty_reason",
                "Why the period's outcomes are empty",
                "string",
                derivation=(
                    f"Empty when the outcomes are given ({minimum}); otherwise: no collectable "
                    "day; no assessed day; too few assessed days: n < minimum; too few of the "
                    "collectable days assessed: n/collectable < share."
                ),
            ),
        ),
        outcome_groups,
        splits=True,
        row="one period of a participant (baseline, each month, the treatment) and its outcomes",
        key=("participant_id", "period"),
        joins=("participants",),
        notes=(
            "Its drinking_calendar rows are the participant's days from period_start to "
            "period_end.",
        ),
    )
