"""Adverse events of the demo at the rates of the published high-dose baclofen trials.

Incidence over 24 weeks of treatment, baclofen vs placebo, from ALPADIR, Bacloville and
BACLAD (rounded): somnolence/sedation, fatigue or dizziness in about 40% vs 20% of
participants, insomnia 35% vs 20%, paraesthesia and dry mouth 15% vs 4% each; the common
background events alike in both arms; a few serious events. Verbatim terms vary as sites
write them (case, synonyms, the odd term no dictionary knows, which stays uncoded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class AeType:
    verbatims: tuple[str, ...]
    active: float  # incidence on the active drug over the treatment period
    placebo: float
    onset: str = "any"  # "titration", "early" (mostly in the first weeks) or "any"
    sedating: bool = False  # leads to dose reductions; a known baclofen effect
    known_effect: bool = False  # investigators tend to judge it related


AE_TYPES = (
    AeType(
        ("Somnolence", "drowsiness", "Drowsy", "sleepy", "Sedation", "DROWSINESS"),
        0.24,
        0.10,
        "titration",
        sedating=True,
        known_effect=True,
    ),
    AeType(
        ("Fatigue", "tired", "tiredness", "Asthenia"),
        0.14,
        0.09,
        "titration",
        sedating=True,
        known_effect=True,
    ),
    AeType(
        ("Dizziness", "dizzy", "Vertigo"), 0.12, 0.05, "titration", sedating=True, known_effect=True
    ),
    AeType(
        ("Insomnia", "sleeplessness", "trouble sleeping", "insomnia"),
        0.38,
        0.22,
        "early",
        known_effect=True,
    ),
    AeType(
        ("Paraesthesia", "pins and needles", "tingling"), 0.16, 0.045, "early", known_effect=True
    ),
    AeType(("Dry mouth", "dry  mouth"), 0.16, 0.045, "early", known_effect=True),
    AeType(("Nausea",), 0.14, 0.10, "titration", known_effect=True),
    AeType(("Headache",), 0.15, 0.13),
    AeType(("Constipation",), 0.08, 0.04, "early", known_effect=True),
    AeType(("Hyperhidrosis", "sweating"), 0.07, 0.04, "early", known_effect=True),
    AeType(("Muscle spasms", "muscle weakness"), 0.06, 0.03, "early", known_effect=True),
    AeType(("Tinnitus",), 0.04, 0.01, known_effect=True),
    AeType(("Confusional state", "confusion"), 0.03, 0.01, "titration", known_effect=True),
    AeType(("Disturbance in attention", "Memory impairment"), 0.05, 0.02, known_effect=True),
    AeType(("Abnormal dreams", "vivid dreams"), 0.05, 0.03, known_effect=True),
    AeType(("Libido decreased", "Erectile dysfunction"), 0.04, 0.02),
    AeType(("Depression",), 0.06, 0.06),
    AeType(("Anxiety",), 0.09, 0.09),
    AeType(("Nasopharyngitis", "common cold", "Influenza"), 0.10, 0.10),
    AeType(("Back pain",), 0.05, 0.05),
    AeType(("Diarrhoea", "diarrhea"), 0.06, 0.06),
    AeType(("Abdominal pain", "stomach ache"), 0.06, 0.05),
    AeType(("Fall",), 0.04, 0.02, known_effect=True),
    AeType(("Alcohol withdrawal syndrome", "alcohol withdrawal"), 0.04, 0.05),
    AeType(("Decreased appetite", "Weight increased"), 0.05, 0.03),
    AeType(("Tremor",), 0.03, 0.02),
    # Verbatims no dictionary codes: listed for the coders, never dropped.
    AeType(("heavy legs in the evening", "feeling foggy", "strange taste"), 0.03, 0.02),
)

# (verbatim, active, placebo, criteria, grade): serious events over the treatment period.
SERIOUS_TYPES = (
    ("Alcohol withdrawal syndrome", 0.012, 0.012, ("hospitalisation",), 3),
    ("Seizure", 0.005, 0.002, ("hospitalisation",), 3),
    ("Intentional overdose", 0.006, 0.003, ("life_threatening", "hospitalisation"), 4),
    ("Suicide attempt", 0.004, 0.004, ("hospitalisation",), 3),
    ("Hip fracture", 0.003, 0.002, ("hospitalisation",), 3),
    ("Pancreatitis acute", 0.004, 0.005, ("hospitalisation",), 3),
    ("Pneumonia", 0.005, 0.005, ("hospitalisation",), 3),
    ("Delirium tremens", 0.002, 0.003, ("hospitalisation", "other_important"), 4),
)
DEATH_RATE = 0.003


FATAL_CAUSES = ("Cardiac arrest", "Alcohol poisoning", "Hepatic failure")


@dataclass
class Event:
    """One adverse event; ``action`` ties it to the dosing record it causes."""

    term: str
    onset: date
    end: date | None
    grade: int
    serious: bool
    criteria: tuple[str, ...]
    relatedness: str
    action: str
    outcome: str
    sedating: bool = False

    def body(self) -> dict:
        """The event as the AE endpoint takes it."""
        return {
            "term": self.term,
            "onset_date": self.onset,
            "end_date": self.end,
            "grade": self.grade,
            "serious": self.serious,
            "seriousness_criteria": list(self.criteria),
            "relatedness": self.relatedness,
            "action_taken": self.action,
            "outcome": self.outcome,
            # The site learns of a serious event on its onset day in this simulation.
            "awareness_date": self.onset if self.serious else None,
        }


def _onset(rng: random.Random, kind: str, day0: date) -> date:
    """Titration effects come in the first weeks, others early or at any time."""
    if kind == "titration":
        return day0 + timedelta(days=round(rng.triangular(1, 60, 12)))
    if kind == "early":
        return day0 + timedelta(days=round(rng.triangular(1, 180, 10)))
    return day0 + timedelta(days=rng.randint(1, 185))


def _close(rng: random.Random, event: Event, days: int, last_contact: date) -> Event:
    """End the event after ``days`` if that is known by the last contact, else ongoing."""
    end = event.onset + timedelta(days=days)
    if end <= last_contact:
        event.end = end
        event.outcome = "recovered" if rng.random() < 0.96 else "recovered_with_sequelae"
    else:
        event.end, event.outcome = None, rng.choice(("recovering", "not_recovered"))
    return event


def _relatedness(rng: random.Random, known: bool) -> str:
    weights = (5, 15, 45, 30, 5) if known else (30, 40, 22, 7, 1)
    return rng.choices(("not_related", "unlikely", "possible", "probable", "definite"), weights)[0]


def draw_events(
    rng: random.Random, active: bool, day0: date, last_contact: date, *, fatal: bool
) -> list[Event]:
    """The participant's AEs with onset by their last contact (so exposure scales them)."""
    events = []
    for kind in AE_TYPES:
        if rng.random() >= (kind.active if active else kind.placebo):
            continue
        onset = _onset(rng, kind.onset, day0)
        if onset > last_contact:
            continue
        grade = rng.choices((1, 2, 3), (60, 33, 7))[0]
        action = "none"
        if kind.sedating and rng.random() < (0.45 if grade >= 2 else 0.2):
            action = "dose_reduced"
        elif kind.known_effect and grade >= 2 and rng.random() < 0.12:
            action = "drug_interrupted"
        event = Event(
            term=rng.choice(kind.verbatims),
            onset=onset,
            end=None,
            grade=grade,
            serious=False,
            criteria=(),
            relatedness=_relatedness(rng, kind.known_effect),
            action=action,
            outcome="recovered",
            sedating=kind.sedating,
        )
        events.append(_close(rng, event, round(rng.lognormvariate(2.3, 0.8)) + 1, last_contact))
    for term, active_rate, placebo_rate, criteria, grade in SERIOUS_TYPES:
        if rng.random() >= (active_rate if active else placebo_rate):
            continue
        onset = _onset(rng, "any", day0)
        if onset > last_contact:
            continue
        event = Event(
            term,
            onset,
            None,
            grade,
            True,
            criteria,
            _relatedness(rng, False),
            rng.choice(("none", "drug_interrupted")),
            "recovered",
        )
        events.append(_close(rng, event, rng.randint(4, 21), last_contact))
    if fatal:
        events.append(
            Event(
                # The cause, never "Death" (an outcome, not an event: MedDRA convention);
                # picked by date so the participant's random stream stays as it was.
                FATAL_CAUSES[last_contact.toordinal() % len(FATAL_CAUSES)],
                last_contact,
                last_contact,
                5,
                True,
                ("death",),
                "unlikely",
                "not_applicable",
                "fatal",
            )
        )
    return sorted(events, key=lambda e: (e.onset, e.term))


def withdrawal_event(rng: random.Random, active: bool, onset: date, last_contact: date) -> Event:
    """The AE that makes a participant stop the study drug (a known effect, mostly)."""
    kinds = [k for k in AE_TYPES if k.known_effect]
    weights = [k.active if active else k.placebo for k in kinds]
    kind = rng.choices(kinds, weights)[0]
    event = Event(
        rng.choice(kind.verbatims),
        onset,
        None,
        rng.choice((2, 2, 3)),
        False,
        (),
        _relatedness(rng, True),
        "drug_withdrawn",
        "recovered",
        kind.sedating,
    )
    return _close(rng, event, rng.randint(3, 20), last_contact)
