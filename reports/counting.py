"""The counting engine of the safety reports: participant-level incidence, worst grades, rates.

Works on the plain rows of ``reports.rows`` (never ORM objects), so every count can be checked
against a hand-computed fixture. Columns are sets of participant codes: one per arm in the
closed report, one pooled "Total" column in both; the engine never learns an arm itself.

Rules, stated once here and in each table's footnote:

* Denominator of a column: the safety population in it (randomized with a recorded first
  dose). Events of anyone outside the column are not counted in it.
* A participant counts once per preferred term and once per system organ class, at the worst
  (highest) grade among their events there; event counts, where shown, count every event.
* Treatment-emergent and the safety population: ``trial.safety.definitions`` (their one home).
* Organ classes alphabetically, uncoded verbatim terms last; preferred terms within a class by
  descending number of participants in the total column, then alphabetically.
* ``n (%)`` with the percentage rounded half up to one decimal; a zero count is shown as ``0``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from reports.rows import AdverseEventRow, ParticipantRow
from trial.safety.definitions import (
    SAFETY_POPULATION,
    TREATMENT_EMERGENT,
    in_safety_population,
    is_treatment_emergent,
)

TOTAL = "Total"
UNCODED_SOC = "Uncoded terms (verbatim, awaiting coding)"
RELATED = ("possible", "probable", "definite")
DISCONTINUATION_ACTION = "drug_withdrawn"

PERCENT_RULE = (
    "n (%): number of participants, percentage of the column's N rounded half up to one "
    "decimal; a count of zero is shown as 0."
)
DENOMINATOR_RULE = (
    f"N: safety population ({SAFETY_POPULATION}) in the column, as of the data cut-off."
)
INCIDENCE_RULE = (
    "A participant is counted once per preferred term and once per system organ class, at "
    f"the worst grade among their events there. Treatment-emergent: {TREATMENT_EMERGENT}. "
    "Organ classes alphabetically (uncoded verbatim terms last); terms by "
    "descending frequency in the Total column, then alphabetically."
)


# --- columns and formatting ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    members: frozenset[str]

    @property
    def denominator(self) -> int:
        return len(self.members)

    @property
    def header(self) -> str:
        return f"{self.label}\n(N={self.denominator})"


def safety_population(participants: Iterable[ParticipantRow]) -> set[str]:
    """The participants in the safety population (``trial.safety.definitions``)."""
    return {
        p.participant_id
        for p in participants
        if in_safety_population(p.randomized_on is not None, p.first_dose)
    }


def build_columns(
    population: Iterable[str],
    arm_of: Mapping[str, str] | None = None,
    arm_labels: Sequence[tuple[str, str]] = (),
) -> list[Column]:
    """One column per arm (``arm_labels``: (arm name, printed label) in protocol order) when
    ``arm_of`` is given, then the total; only the total without arms."""
    members = frozenset(population)
    columns = []
    if arm_of is not None:
        missing = sorted(pid for pid in members if pid not in arm_of)
        if missing:
            raise ValueError(f"no arm for {len(missing)} participant(s), e.g. {missing[0]}")
        for arm, label in arm_labels:
            columns.append(Column(label, label, frozenset(p for p in members if arm_of[p] == arm)))
    columns.append(Column(TOTAL, TOTAL, members))
    return columns


def percent_tenths(n: int, denominator: int) -> int:
    """100 * n / denominator in tenths of a percent, rounded half up, in exact integers."""
    return (2000 * n + denominator) // (2 * denominator)


def format_percent(n: int, denominator: int) -> str:
    tenths = percent_tenths(n, denominator)
    return f"{tenths // 10}.{tenths % 10}"


def n_pct(n: int, denominator: int) -> str:
    """``n (%)``; zero (or an empty column) is ``0``."""
    if n == 0 or denominator == 0:
        return "0"
    return f"{n} ({format_percent(n, denominator)})"


# --- treatment-emergence ------------------------------------------------------------------


def first_doses(participants: Iterable[ParticipantRow]) -> dict[str, date | None]:
    return {p.participant_id: p.first_dose for p in participants}


def treatment_emergent(
    events: Iterable[AdverseEventRow], first_dose: Mapping[str, date | None]
) -> list[AdverseEventRow]:
    return [
        e for e in events if is_treatment_emergent(e.onset_date, first_dose.get(e.participant_id))
    ]


# --- sets of participants (overview, worst grade, special interest) -----------------------


@dataclass
class ParticipantSet:
    """A table row: who is in it, and how many events each of them contributed."""

    label: str
    events: Counter = field(default_factory=Counter)  # participant -> number of events
    extra: set[str] = field(default_factory=set)  # participants counted without an event

    @property
    def participants(self) -> set[str]:
        return set(self.events) | self.extra

    def n(self, column: Column) -> int:
        return len(self.participants & column.members)

    def event_count(self, column: Column) -> int:
        return sum(self.events[p] for p in column.members if p in self.events)


def _set_of(label: str, events: Iterable[AdverseEventRow]) -> ParticipantSet:
    return ParticipantSet(label, Counter(e.participant_id for e in events))


def ae_overview(
    events: Sequence[AdverseEventRow],
    participants: Iterable[ParticipantRow],
) -> list[ParticipantSet]:
    """Participants (and events) with any AE, a TEAE, and the TEAE subsets of DESIGN 5."""
    people = list(participants)
    emergent = treatment_emergent(events, first_doses(people))
    deaths = _set_of("Deaths", [e for e in events if e.outcome == "fatal"])
    deaths.extra = {p.participant_id for p in people if p.disposition == "death"}
    return [
        _set_of("Any adverse event", events),
        _set_of("Any treatment-emergent AE (TEAE)", emergent),
        _set_of(
            "Related TEAE (possible, probable, definite)",
            [e for e in emergent if e.relatedness in RELATED],
        ),
        _set_of("Serious TEAE", [e for e in emergent if e.serious]),
        _set_of("TEAE of grade 3 or higher", [e for e in emergent if e.grade >= 3]),
        _set_of(
            "TEAE leading to discontinuation of study drug",
            [e for e in emergent if e.action_taken == DISCONTINUATION_ACTION],
        ),
        deaths,
    ]


GRADE_LABELS = {
    1: "Grade 1 (mild)",
    2: "Grade 2 (moderate)",
    3: "Grade 3 (severe)",
    4: "Grade 4 (life-threatening)",
    5: "Grade 5 (fatal)",
}


def worst_grade_distribution(
    emergent: Iterable[AdverseEventRow], population: Iterable[str]
) -> list[ParticipantSet]:
    """Each participant once, at the worst grade of their TEAEs (or in "no TEAE")."""
    worst: dict[str, int] = {}
    for event in emergent:
        worst[event.participant_id] = max(event.grade, worst.get(event.participant_id, 0))
    none = ParticipantSet("No TEAE", extra=set(population) - set(worst))
    rows = [none]
    for grade, label in GRADE_LABELS.items():
        rows.append(ParticipantSet(label, extra={p for p, g in worst.items() if g == grade}))
    return rows


# Baclofen's adverse events of special interest (DESIGN 5), as MedDRA preferred terms.
SPECIAL_INTEREST = {
    "Sedation": ("Sedation", "Somnolence", "Hypersomnia", "Lethargy",
                 "Depressed level of consciousness", "Loss of consciousness"),
    "Dizziness": ("Dizziness", "Dizziness postural", "Vertigo"),
    "Confusion": ("Confusional state", "Disorientation", "Delirium"),
    "Falls": ("Fall",),
    "Seizures": ("Seizure", "Generalised tonic-clonic seizure", "Status epilepticus"),
    "Depression and suicidality": ("Depression", "Depressed mood", "Suicidal ideation",
                                   "Suicidal behaviour", "Suicide attempt"),
    "Overdose": ("Overdose", "Accidental overdose", "Intentional overdose",
                 "Toxicity to various agents"),
    "Withdrawal": ("Drug withdrawal syndrome", "Alcohol withdrawal syndrome",
                   "Delirium tremens"),
}  # fmt: skip


def special_interest(emergent: Sequence[AdverseEventRow]) -> list[tuple[ParticipantSet, ...]]:
    """Per category: (any grade, grade >= 3) participant sets among TEAEs."""
    rows = []
    for category, terms in SPECIAL_INTEREST.items():
        wanted = {t.casefold() for t in terms}
        hits = [e for e in emergent if (e.preferred_term or "").casefold() in wanted]
        rows.append((_set_of(category, hits), _set_of(category, [e for e in hits if e.grade >= 3])))
    return rows


# --- incidence by organ class and preferred term ------------------------------------------


@dataclass
class IncidenceRow:
    level: str  # "soc" or "pt"
    system_organ_class: str
    label: str
    worst: dict[str, int] = field(default_factory=dict)  # participant -> worst grade
    events: Counter = field(default_factory=Counter)  # participant -> events

    def n(self, column: Column, min_grade: int = 1) -> int:
        return sum(1 for p, g in self.worst.items() if g >= min_grade and p in column.members)

    def event_count(self, column: Column) -> int:
        return sum(count for p, count in self.events.items() if p in column.members)


def _normal(term: str) -> str:
    return " ".join(term.split()).casefold()


def incidence(events: Iterable[AdverseEventRow], columns: Sequence[Column]) -> list[IncidenceRow]:
    """Participant-level incidence by organ class and term (pass the TEAEs to count)."""
    total = next(c for c in columns if c.key == TOTAL)
    by_soc: dict[str, IncidenceRow] = {}
    by_term: dict[tuple[str, str], IncidenceRow] = {}
    spellings: dict[tuple[str, str], str] = {}
    for event in events:
        pid = event.participant_id
        if pid not in total.members:
            continue
        if event.preferred_term is None:
            soc, key = UNCODED_SOC, _normal(event.term)
            spelling = " ".join(event.term.split())
            spellings[(soc, key)] = min(spellings.get((soc, key), spelling), spelling)
        else:
            soc, key = event.system_organ_class, event.preferred_term
            spellings[(soc, key)] = key
        for row in (
            by_soc.setdefault(soc, IncidenceRow("soc", soc, soc)),
            by_term.setdefault((soc, key), IncidenceRow("pt", soc, "")),
        ):
            row.worst[pid] = max(event.grade, row.worst.get(pid, 0))
            row.events[pid] += 1
    rows = []
    for soc in sorted(by_soc, key=lambda s: (s == UNCODED_SOC, s.casefold(), s)):
        rows.append(by_soc[soc])
        terms = [(key, row) for (s, key), row in by_term.items() if s == soc]
        for key, row in terms:
            row.label = spellings[(soc, key)]
        terms.sort(key=lambda item: (-item[1].n(total), item[1].label.casefold(), item[1].label))
        rows.extend(row for _, row in terms)
    return rows


def any_event_row(events: Iterable[AdverseEventRow], columns: Sequence[Column]) -> IncidenceRow:
    """The "any TEAE" line heading the incidence table."""
    row = IncidenceRow("any", "", "Any treatment-emergent AE")
    total = next(c for c in columns if c.key == TOTAL)
    for event in events:
        if event.participant_id in total.members:
            pid = event.participant_id
            row.worst[pid] = max(event.grade, row.worst.get(pid, 0))
            row.events[pid] += 1
    return row


# --- risk difference -----------------------------------------------------------------------

Z95 = 1.959963984540054


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = x / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def risk_difference(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float] | None:
    """p1 - p2 with Newcombe's hybrid score 95% interval (method 10); None for an empty arm."""
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p1 - p2
    return (
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )
