"""One participant's visits on the schedule: when each falls, and what each records.

Most visits fall inside their window, now and then one falls outside it (with a reason) or is
missed; a completed visit carries the calendar days since the one before and the
assessments the schedule asks for then. Drawn from the participant's "course" stream, passed
in by ``course.simulate_course`` in the order it always drew them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from randomization.demo import measures
from randomization.demo.profile import Profile
from trial.protocol import Protocol, VisitDefinition
from trial.visits.windows import in_window

OUT_OF_WINDOW_REASONS = (
    "Participant unavailable within the window (travel)",
    "Participant unwell on the planned day; seen when recovered",
    "Clinic closed on the planned days (public holiday)",
)
MISSED_REASONS = (
    "Participant did not attend and could not be reached",
    "Participant hospitalised elsewhere",
    "Participant travelling",
    "Visit not rescheduled within the window",
)


@dataclass
class _Plan:
    definition: VisitDefinition
    date: date | None  # None when missed
    missed_reason: str | None = None


def _offset(rng, definition: VisitDefinition) -> int:
    """Days from target: mostly inside the window, now and then outside it."""
    draw = rng.random()
    if draw < 0.035:
        return definition.window_after + rng.randint(1, 3)
    if draw < 0.045 and definition.day > 7:
        return -(definition.window_before + rng.randint(1, 2))
    return round(rng.triangular(-definition.window_before, definition.window_after, 0))


def timeline(rng, profile: Profile, protocol: Protocol, until: date) -> list[_Plan]:
    day0 = profile.randomization
    plans, previous = [], day0
    for definition in protocol.visits:
        if definition.day < 0:
            continue
        if definition.day == 0:
            plans.append(_Plan(definition, day0))
            continue
        when = max(
            day0 + timedelta(days=definition.day + _offset(rng, definition)),
            previous + timedelta(days=2),
        )
        if when > until:
            break
        if definition is not protocol.visits[-1] and rng.random() < profile.miss_rate:
            plans.append(_Plan(definition, None, rng.choice(MISSED_REASONS)))
            continue
        plans.append(_Plan(definition, when))
        previous = when
    return plans


def _assessed(day: int, end_of_treatment: int, protocol: Protocol) -> bool:
    """Monthly through week 12, then at the end of treatment and at follow-up."""
    return (0 < day <= 84 and day % 28 == 0) or day in (end_of_treatment, protocol.visits[-1].day)


def lab_tests(day: int, end_of_treatment: int, protocol: Protocol) -> tuple[str, ...]:
    if not _assessed(day, end_of_treatment, protocol):
        return ()
    if day == end_of_treatment:
        return ("GGT", "ALT", "AST", "bilirubin", "CDT")
    return (
        ("GGT", "ALT", "AST", "CDT")
        if day % 84 == 0 or day > end_of_treatment
        else ("GGT", "ALT", "AST")
    )


def missed(plan: _Plan) -> dict:
    return {
        "visit_code": plan.definition.code,
        "visit_date": None,
        "status": "missed",
        "missed_reason": plan.missed_reason,
    }


def completed(rng, profile, plan, previous, full, ratio, end_of_treatment, protocol, *, liver):
    day = plan.definition.day
    period = [previous + timedelta(days=k) for k in range((plan.date - previous).days)]
    days = measures.recalled(rng, period, profile.recall_gap_rate) if day > 0 else period
    off_drug = end_of_treatment + 7 * protocol.dosing["taper_weeks"]
    tests = lab_tests(day, end_of_treatment, protocol)
    withdrawal = profile.ciwa * (0.4 + 0.6 * min(ratio, 1.0)) + (2.5 if day == off_drug else 0)
    late = not in_window(plan.definition, profile.randomization, plan.date)
    return {
        "visit_code": plan.definition.code,
        "visit_date": plan.date,
        "status": "completed",
        "missed_reason": None,
        # Picked by date, not drawn: the participant's random stream stays as it was.
        "out_of_window_reason": (
            OUT_OF_WINDOW_REASONS[plan.date.toordinal() % len(OUT_OF_WINDOW_REASONS)]
            if late
            else None
        ),
        "drinking": [{"day": d, "standard_drinks": full[d]} for d in days],
        "ocds": (
            measures.ocds(rng, profile.craving * (0.35 + 0.65 * min(ratio, 1.2)))
            if day == 0 or _assessed(day, end_of_treatment, protocol)
            else None
        ),
        "ciwa": measures.ciwa(rng, withdrawal) if day in (0, 7, 14, off_drug) else None,
        "vitals": measures.vitals(rng, profile, ratio),
        "labs": measures.labs(
            rng, profile, ratio, tests, alt_multiple=rng.uniform(3.2, 6.0) if liver else None
        ),
    }
