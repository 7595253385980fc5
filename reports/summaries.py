"""The non-AE numbers of a safety report: enrollment, disposition, baseline, exposure,
completeness. Plain rows in, plain numbers out, like ``reports.counting``."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from reports.counting import Column, n_pct, safety_population
from reports.rows import DoseRow, ParticipantRow, SafetyData, SiteRow, VisitRow
from trial.conduct.course import Ending, visit_expected

# Final dispositions; a treatment discontinuation is counted on its own row (it is not final).
DISPOSITION_LABELS = (
    ("completed", "Completed"),
    ("withdrew", "Withdrew consent"),
    ("lost_to_follow_up", "Lost to follow-up"),
    ("death", "Died"),
)
PLANNED_ACCRUAL_MONTHS = 24  # the planned curve: linear accrual over this many months


def randomized(participants: Iterable[ParticipantRow]) -> set[str]:
    return {p.participant_id for p in participants if p.randomized_on is not None}


def describe(values: Sequence[float], digits: int = 1) -> tuple[str, str]:
    """("mean (SD)", "median [min, max]") or dashes when there is nothing to describe."""
    if not values:
        return "-", "-"
    mean = f"{statistics.fmean(values):.{digits}f}"
    sd = f"{statistics.stdev(values):.{digits}f}" if len(values) > 1 else "-"
    median = f"{statistics.median(values):.{digits}f}"
    return f"{mean} ({sd})", f"{median} [{min(values):g}, {max(values):g}]"


# --- enrollment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteEnrollment:
    site: SiteRow
    registered: int
    randomized: int
    dosed: int


def enrollment_by_site(data: SafetyData) -> list[SiteEnrollment]:
    rows = []
    for site in data.sites:
        people = [p for p in data.participants if p.site == site.code]
        rows.append(
            SiteEnrollment(
                site,
                len(people),
                sum(1 for p in people if p.randomized_on is not None),
                len(safety_population(people)),
            )
        )
    return rows


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def enrollment_curve(data: SafetyData) -> tuple[list[date], dict[str, list[int]], list[float]]:
    """Month ends, cumulative randomized per site at each, and the planned cumulative total.

    The planned curve is linear from the first consent to the sites' total planned enrollment
    over ``PLANNED_ACCRUAL_MONTHS``.
    """
    dates = [p.randomized_on for p in data.participants if p.randomized_on is not None]
    consents = [p.consent_date for p in data.participants]
    if not consents:
        return [], {}, []
    start = month_start(min(consents))
    months = []
    cursor = start
    while cursor <= data.cutoff_date:
        cursor = next_month(cursor)
        months.append(cursor)
    per_site: dict[str, list[int]] = {}
    for site in data.sites:
        days = sorted(
            p.randomized_on
            for p in data.participants
            if p.site == site.code and p.randomized_on is not None
        )
        per_site[site.code] = [sum(1 for d in days if d < edge) for edge in months]
    planned_total = sum(site.planned_enrollment for site in data.sites)
    planned = [
        min(1.0, i / PLANNED_ACCRUAL_MONTHS) * planned_total for i in range(1, len(months) + 1)
    ]
    del dates
    return months, per_site, planned


# --- disposition, baseline, exposure ------------------------------------------------------


def disposition(participants: Sequence[ParticipantRow], columns: Sequence[Column]):
    """CONSORT-style rows (label, cells) over randomized participants per column."""
    status = {p.participant_id: p.disposition for p in participants}
    dosed = {p.participant_id for p in participants if p.first_dose is not None}
    rows = [("Randomized", [str(c.denominator) for c in columns])]
    rows.append(
        ("Received study drug", [n_pct(len(c.members & dosed), c.denominator) for c in columns])
    )
    stopped = {p.participant_id for p in participants if p.treatment_stop_date is not None}
    rows.append(
        ("Discontinued study drug early (followed on)",
         [n_pct(len(c.members & stopped), c.denominator) for c in columns])
    )  # fmt: skip
    for key, label in DISPOSITION_LABELS:
        rows.append(
            (
                label,
                [n_pct(sum(status[p] == key for p in c.members), c.denominator) for c in columns],
            )
        )
    rows.append(
        ("Ongoing (no final disposition)",
         [n_pct(sum(status[p] is None for p in c.members), c.denominator) for c in columns])
    )  # fmt: skip
    return rows


def baseline(participants: Sequence[ParticipantRow], columns: Sequence[Column], sites):
    people = {p.participant_id: p for p in participants}
    rows = []
    ages = [[people[p].age_at_consent for p in c.members] for c in columns]
    mean_sd, median_range = zip(*(describe(a) for a in ages), strict=True)
    rows.append(("Age at consent, years: mean (SD)", list(mean_sd)))
    rows.append(("   median [min, max]", list(median_range)))
    for sex, label in (("F", "Female"), ("M", "Male")):
        rows.append(
            (label, [n_pct(sum(people[p].sex == sex for p in c.members), c.denominator)
                     for c in columns])
        )  # fmt: skip
    for site in sites:
        rows.append(
            (f"Site {site.code}",
             [n_pct(sum(people[p].site == site.code for p in c.members), c.denominator)
              for c in columns])
        )  # fmt: skip
    return rows


def exposure_days(
    doses: Sequence[DoseRow], participant: ParticipantRow, cutoff_date: date
) -> tuple[int, int]:
    """Days on study drug (days with at least one tablet) and the highest daily tablets.

    Each dosing row holds from its date until the next row; the last runs to the final
    disposition date, the treatment discontinuation date or the cut-off date, whichever comes
    first (both days included).
    """
    end = cutoff_date
    for stop in (participant.disposition_date, participant.treatment_stop_date):
        if stop is not None:
            end = min(end, stop)
    days, peak = 0, 0
    ordered = sorted(doses, key=lambda d: d.date)
    for i, dose in enumerate(ordered):
        until = ordered[i + 1].date - timedelta(days=1) if i + 1 < len(ordered) else end
        until = min(until, end)
        if dose.tablets_per_day > 0 and until >= dose.date:
            days += (until - dose.date).days + 1
            peak = max(peak, dose.tablets_per_day)
    return days, peak


def exposure(data: SafetyData, columns: Sequence[Column], max_tablets: int):
    people = {p.participant_id: p for p in data.participants}
    by_person: dict[str, list[DoseRow]] = defaultdict(list)
    for dose in data.doses:
        by_person[dose.participant_id].append(dose)
    measured = {
        pid: exposure_days(by_person[pid], people[pid], data.cutoff_date)
        for column in columns
        for pid in column.members
    }
    rows = []
    days = [[measured[p][0] for p in c.members] for c in columns]
    peaks = [[measured[p][1] for p in c.members] for c in columns]
    mean_sd, median_range = zip(*(describe(d) for d in days), strict=True)
    rows.append(("Days on study drug: mean (SD)", list(mean_sd)))
    rows.append(("   median [min, max]", list(median_range)))
    rows.append(("Participant-years on study drug", [f"{sum(d) / 365.25:.1f}" for d in days]))
    mean_sd, median_range = zip(*(describe(p) for p in peaks), strict=True)
    rows.append(("Highest tablets/day: mean (SD)", list(mean_sd)))
    rows.append(("   median [min, max]", list(median_range)))
    rows.append(
        (f"Reached {max_tablets} tablets/day",
         [n_pct(sum(1 for v in p if v >= max_tablets), c.denominator)
          for p, c in zip(peaks, columns, strict=True)])
    )  # fmt: skip
    return rows


# --- data completeness ---------------------------------------------------------------------


COMPLETENESS_RULE = (
    "Expected: randomized participants whose visit is recorded (completed or missed, whatever "
    "its date: a visit outside its window is accepted and recorded as a deviation), and those "
    "whose visit window closed by the cut-off date with no final disposition dated before the "
    "window opened."
)


def completeness(data: SafetyData, visit_definitions) -> list[tuple[str, int, int, int, str]]:
    """Per scheduled visit after randomization: (label, expected, completed, missed, % done).

    Expected (``COMPLETENESS_RULE``, printed under the table): a recorded visit, completed or
    missed, whatever its date; the schedule shows a recorded visit so too. A visit not
    recorded: when its window closed on or before the cut-off date and no final disposition
    is dated before the window opened (``visit_expected``, the rule the schedule and the
    worklist follow; a treatment discontinuation is not final). So a follow-up visit done
    early, on the day the participant completed the study and before its window opened, is
    expected and completed.
    """
    recorded: dict[tuple[str, str], VisitRow] = {
        (v.participant_id, v.visit_code): v for v in data.visits
    }
    rows = []
    for visit in visit_definitions:
        if visit.day <= 0:
            continue
        expected = completed = missed = 0
        for p in data.participants:
            if p.randomized_on is None:
                continue
            opens = p.randomized_on + timedelta(days=visit.earliest_day)
            closes = p.randomized_on + timedelta(days=visit.latest_day)
            row = recorded.get((p.participant_id, visit.code))
            if row is None and closes > data.cutoff_date:
                continue
            final = None
            if p.disposition_date is not None:
                final = Ending(p.disposition, p.disposition_date)
            if row is None and not visit_expected(opens, final):
                continue
            expected += 1
            completed += row is not None and row.status == "completed"
            missed += row is not None and row.status == "missed"
        rows.append((visit.label, expected, completed, missed, n_pct(completed, expected)))
    return rows


def deviation_counts(data: SafetyData) -> list[tuple[str, int, int]]:
    """(category, deviations, participants) in category order of frequency."""
    events = Counter(d.category for d in data.deviations)
    people = Counter({c: len({d.participant_id for d in data.deviations if d.category == c})
                      for c in events})  # fmt: skip
    return [(c, events[c], people[c]) for c in sorted(events, key=lambda c: (-events[c], c))]
