"""One randomized participant's course through the schedule, given their arm.

Drinking falls more on the active drug: a participant responds (to low or medium-risk
drinking, a third of them to near-abstinence) with probability 0.57 on baclofen and 0.36 on
placebo, Bacloville's responder rates; others cut down a little. The course is drawn from the
participant's own "course" stream, so for a given allocation it is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from randomization.demo import adverse, blinding, measures, schedule
from randomization.demo.dosing import dosing_records
from randomization.demo.profile import Profile, participant_rng
from trial.protocol import Protocol

RESPONDER_RATE = {True: 0.57, False: 0.36}
DROPOUT_RATE = 0.36  # of those who would otherwise finish: about a third stop early
DROPOUT_REASONS = (
    ("discontinued_treatment", "Adverse event"),
    ("discontinued_treatment", "Lack of efficacy"),
    ("discontinued_treatment", "Participant decision"),
    ("withdrew", "Withdrew consent"),
    ("lost_to_follow_up", None),
)
DROPOUT_WEIGHTS = {True: (35, 12, 10, 18, 25), False: (14, 30, 12, 18, 26)}
LIVER_EVENT_RATE = 0.006


def is_active(arm: str) -> bool:
    return arm.casefold() != "placebo"


@dataclass
class Course:
    visits: list[dict] = field(default_factory=list)
    dosing: list[dict] = field(default_factory=list)
    events: list[adverse.Event] = field(default_factory=list)
    deviations: list[dict] = field(default_factory=list)
    # A treatment discontinuation (follow-up goes on), then the final disposition, if any.
    dispositions: list[dict] = field(default_factory=list)


def _visit_day(protocol: Protocol, code: str, default: int) -> int:
    try:
        return protocol.visit(code).day
    except KeyError:
        return default


def simulate_course(profile: Profile, arm: str, today: date, protocol: Protocol) -> Course:
    rng = participant_rng(profile.rng_base, profile.pid, "course")
    active = is_active(arm)
    day0 = profile.randomization
    end_of_treatment = _visit_day(protocol, "end_of_treatment", 168)
    off_drug = end_of_treatment + 7 * protocol.dosing["taper_weeks"]
    # How drinking evolves: the share of baseline drinking days and drinks kept at the end.
    if rng.random() < RESPONDER_RATE[active]:
        days_kept = rng.uniform(0.02, 0.10) if rng.random() < 0.3 else rng.uniform(0.25, 0.6)
        drinks_kept, ramp, relapse = (
            rng.uniform(0.3, 0.5),
            rng.uniform(21, 70),
            rng.uniform(0, 0.35),
        )
    else:
        days_kept, drinks_kept = rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)
        ramp, relapse = rng.uniform(14, 56), rng.uniform(0, 0.2)

    def level(day: date) -> tuple[float, float]:
        t = (day - day0).days
        if t < 0:
            return profile.drink_prob, profile.drinks_mean
        share = min(1.0, t / ramp)
        p, m = 1 - (1 - days_kept) * share, 1 - (1 - drinks_kept) * share
        if t > off_drug:
            p, m = p + (1 - p) * relapse, m + (1 - m) * relapse
        return profile.drink_prob * p, profile.drinks_mean * m

    # Leaving early: when and why (death is rarer and comes with its serious AE).
    stop, status, reason = None, None, None
    if rng.random() < adverse.DEATH_RATE:
        stop, status, reason = day0 + timedelta(days=rng.randint(20, 200)), "death", None
    elif rng.random() < DROPOUT_RATE:
        stop = day0 + timedelta(days=7 + int(200 * rng.betavariate(1.1, 2.0)))
        status, reason = rng.choices(DROPOUT_REASONS, DROPOUT_WEIGHTS[active])[0]
    if stop is not None and stop > today:
        stop = status = reason = None
    # Stopping the study drug is not leaving the study: follow-up goes on (intention to treat).
    leaves = status in ("death", "withdrew", "lost_to_follow_up")
    plans = schedule.timeline(rng, profile, protocol, min(today, stop) if leaves else today)
    completed = [p for p in plans if p.date is not None]
    last_visit = completed[-1].date
    discontinued = (stop, reason) if status == "discontinued_treatment" else None
    if plans[-1].definition.code == protocol.visits[-1].code:  # followed to the end
        stop, status, reason = None, "completed", None
    elif discontinued is not None:
        stop, status, reason = None, None, None
    last_contact = last_visit if status in (None, "completed", "lost_to_follow_up") else stop

    course = Course()
    course.events = adverse.draw_events(rng, active, day0, last_contact, fatal=status == "death")
    ended, why = discontinued if discontinued is not None else (stop, reason)
    if why == "Adverse event":
        onset = max(day0 + timedelta(days=1), ended - timedelta(days=rng.randint(1, 5)))
        course.events.append(adverse.withdrawal_event(rng, active, onset, last_contact))

    # The calendar from day 0 to the last visit, then each visit's share of it.
    full = dict(profile.calendar)
    full.update(measures.calendar(rng, day0, last_visit - timedelta(days=1), level))
    baseline_grams = profile.baseline_grams(protocol)
    grams = protocol.standard_drink_grams

    def drink_ratio(on: date) -> float:
        window = [full.get(on - timedelta(days=k)) for k in range(1, 29)]
        window = [w for w in window if w is not None]
        return (sum(window) / len(window) * grams / baseline_grams) if window else 1.0

    liver_visit = None
    lab_visits = [
        p for p in completed if schedule.lab_tests(p.definition.day, end_of_treatment, protocol)
    ]
    if lab_visits and rng.random() < LIVER_EVENT_RATE:
        liver_visit = rng.choice(lab_visits)
    previous = profile.screening
    for plan in plans:
        if plan.date is None:
            course.visits.append(schedule.missed(plan))
            continue
        course.visits.append(
            schedule.completed(
                rng,
                profile,
                plan,
                previous,
                full,
                drink_ratio(plan.date),
                end_of_treatment,
                protocol,
                liver=plan is liver_visit,
            )
        )
        previous = plan.date
    if liver_visit is not None:
        course.events.append(_liver_event(rng, liver_visit.date, last_contact))
    # The guesses of the arm, from a stream of their own (this one is drawn as before).
    blinding.add_guesses(profile, active, course.events, course.visits, protocol)

    eot = next((p.date for p in completed if p.definition.day == end_of_treatment), None)
    taper_start = eot or day0 + timedelta(days=end_of_treatment)
    dosing_end = today if status is None and discontinued is None else last_contact
    stop_drug = (
        (stop, f"Study drug stopped: {reason or status}")
        if status not in (None, "completed", "lost_to_follow_up", "death")
        else None
    )
    if discontinued is not None:
        stop_drug = (discontinued[0], f"Study drug stopped: {discontinued[1]}")
    course.dosing = dosing_records(
        rng,
        protocol,
        day0,
        _target_dose(rng, active, protocol),
        course.events,
        taper_start,
        stop_drug,
        min(dosing_end, today),
    )
    course.deviations = _deviations(rng, day0, last_contact)
    # A disposition is dated on or after the data it ends (the stop record may fall a day
    # after the planned stop when a dose change was recorded that day).
    last_dose = course.dosing[-1]["date"] if course.dosing else day0
    if discontinued is not None:
        course.dispositions.append(
            {
                "status": "discontinued_treatment",
                "date": max(discontinued[0], last_dose),
                "reason": discontinued[1],
            }
        )
    if status is not None:
        on = last_visit if status in ("completed", "lost_to_follow_up") else stop
        course.dispositions.append(
            {"status": status, "date": max(on, last_dose, last_visit), "reason": reason}
        )
    return course


def _liver_event(rng, onset: date, last_contact: date) -> adverse.Event:
    event = adverse.Event(
        "ALT increased",
        onset,
        None,
        rng.choice((2, 3)),
        False,
        (),
        rng.choice(("unlikely", "possible")),
        rng.choice(("none", "drug_interrupted")),
        "recovered",
    )
    return adverse._close(rng, event, rng.randint(14, 42), last_contact)


def _target_dose(rng, active: bool, protocol: Protocol) -> int:
    """The dose a participant titrates up to: the maximum on placebo, less when sedated."""
    top = protocol.dosing["max_tablets_per_day"]
    if not active:
        return top if rng.random() < 0.85 else max(1, top - rng.randint(1, 3))
    drop = rng.choices((0, 1, 2, 3, 4, 5), (45, 15, 15, 12, 8, 5))[0]
    return max(protocol.dosing["start_tablets_per_day"], top - drop)


def _deviations(rng, day0: date, last_contact: date) -> list[dict]:
    span = (last_contact - day0).days
    out = []
    if span > 7 and rng.random() < 0.04:
        out.append(
            {
                "category": "study_drug",
                "date": day0 + timedelta(days=rng.randint(1, span)),
                "description": "Participant took more tablets than prescribed on one day "
                "(dosing error, no harm reported).",
            }
        )
    if span > 30 and rng.random() < 0.02:
        out.append(
            {
                "category": "procedure",
                "date": day0 + timedelta(days=rng.randint(28, span)),
                "description": "Blood sample for liver tests not drawn at the visit.",
            }
        )
    return out
