"""The demo's blinding assessment: the participant's and the investigator's guess of the arm.

Asked at the visits whose forms include "blinding" (week 12 and the end of treatment by
default), of every completed one. Realistic for baclofen, whose sedation can give the arm
away: someone who has had a sedating adverse event (somnolence, fatigue, dizziness) by the
visit guesses the active drug more often, and more often strongly, in either arm; on
baclofen, without sedation, guesses lean a little towards the drug (other effects: dry mouth,
paraesthesia, less drinking), on placebo they are about even. A share answers don't know
(more investigators than participants).

On a 500-participant demo (seed 7) this gives Bang's index (five answers) of 0.29 to 0.33 on
baclofen and -0.07 to 0.03 on placebo, James' index 0.47 to 0.56, per respondent and visit
(``tests/test_demo_blinding.py`` checks the ranges, and the effect of sedation, on a demo).

The draws come from the participant's own "blinding" stream (``profile.participant_rng``),
so adding the assessment shifted no other figure of the demo: the course's stream is drawn
exactly as before.
"""

from __future__ import annotations

import random
from datetime import date

from randomization.demo.adverse import Event
from randomization.demo.profile import Profile, participant_rng
from trial.protocol import Protocol

RESPONDENTS = ("investigator", "participant")
DONT_KNOW_RATE = {"participant": 0.18, "investigator": 0.26}
# Chance of naming the active drug, among those who name an arm: (on the active drug, sedated).
ACTIVE_GUESS = {
    (True, True): 0.88,
    (True, False): 0.66,
    (False, True): 0.62,
    (False, False): 0.45,
}
# Chance that a guess is "strongly": a guess of the active drug backed by sedation, or another.
STRONGLY_RATE = {True: 0.50, False: 0.30}


def sedated_by(events: list[Event], day: date) -> bool:
    """A sedating adverse event (somnolence, fatigue, dizziness) with onset by ``day``."""
    return any(event.sedating and event.onset <= day for event in events)


def answer(rng: random.Random, respondent: str, active: bool, sedated: bool, arms: tuple) -> dict:
    """One respondent's answer: ``arms`` is (the active drug's name, the control's name)."""
    if rng.random() < DONT_KNOW_RATE[respondent]:
        return {"respondent": respondent, "guess": "dont_know", "confidence": None}
    names_active = rng.random() < ACTIVE_GUESS[(active, sedated)]
    strongly = rng.random() < STRONGLY_RATE[names_active and sedated]
    return {
        "respondent": respondent,
        "guess": arms[0] if names_active else arms[1],
        "confidence": "strongly" if strongly else "somewhat",
    }


def add_guesses(
    profile: Profile, active: bool, events: list[Event], visits: list[dict], protocol: Protocol
) -> None:
    """Put the blinding assessment into each completed visit that asks for it (in place)."""
    from randomization.demo.course import is_active

    drugs = [arm for arm in protocol.arms if is_active(arm)]
    controls = [arm for arm in protocol.arms if not is_active(arm)]
    if len(drugs) != 1 or len(controls) != 1:
        return  # a guess is of one drug against its control: not for another design
    asked = {v.code for v in protocol.visits if "blinding" in v.forms}
    rng = participant_rng(profile.rng_base, profile.pid, "blinding")
    for visit in visits:
        if visit["status"] != "completed" or visit["visit_code"] not in asked:
            continue
        sedated = sedated_by(events, visit["visit_date"])
        visit["blinding"] = [
            answer(rng, respondent, active, sedated, (drugs[0], controls[0]))
            for respondent in RESPONDENTS
        ]
