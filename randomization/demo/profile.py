"""Who each demo participant is before randomization, and how screening goes.

Arm-free: everything here comes from the participant's own "pre" stream, seeded from the demo
seed and the participant id, so it is the same whatever arm the list later gives them, and
one participant's draws never shift another's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from randomization.demo import measures
from trial.participants.models import Participant
from trial.protocol import Protocol

SCREEN_FAILURE_RATE = 0.12
SCREEN_FAILURES = (
    ("low_drinking", "Fewer heavy drinking days at baseline than the protocol requires"),
    ("liver", "ALT above 5 x ULN at screening"),
    ("consent", "Withdrew consent before randomization"),
    ("psychiatric", "Exclusion criterion: unstable psychiatric disorder"),
)
# The eligibility criterion (of the default protocol) each screen failure answers against
# its requirement; "consent" answers every criterion as required and withdraws.
FAILED_CRITERION = {"low_drinking": "I2", "liver": "E1", "psychiatric": "E5"}


def participant_rng(base: int, participant_id: str, purpose: str) -> random.Random:
    """A stream of one participant for one purpose (str seeds hash the same everywhere)."""
    return random.Random(f"demo:{base}:{participant_id}:{purpose}")


@dataclass
class Profile:
    """The participant as screened: baseline drinking, liver, vitals and habits."""

    participant: Participant
    rng_base: int
    sex: str
    age: int
    screening: date
    randomization: date | None  # planned day 0; None: screen failure or still screening
    randomized_at: datetime | None
    screen_failure: str | None
    drink_prob: float  # chance of a drinking day at baseline
    drinks_mean: float  # mean standard drinks on a drinking day at baseline
    ggt: float  # baseline values as multiples of the upper limit of normal
    alt: float
    ast: float
    bilirubin: float
    cdt: float  # %CDT at baseline
    craving: float  # OCDS total at baseline
    ciwa: float  # usual CIWA-Ar total while drinking
    weight: float
    systolic: float
    diastolic: float
    heart_rate: float
    miss_rate: float  # chance of missing a scheduled visit
    recall_gap_rate: float  # chance a calendar has a run of unrecalled days
    calendar: dict[date, float] = field(default_factory=dict)  # screening-28 .. day0-1
    screen_failure_kind: str | None = None  # a key of FAILED_CRITERION, or "consent"
    today: date | None = None  # the site's today when the demo runs

    @property
    def pid(self) -> str:
        return self.participant.participant_id

    def baseline_grams(self, protocol: Protocol) -> float:
        return self.drink_prob * self.drinks_mean * protocol.standard_drink_grams


def draw_profile(base: int, participant: Participant, today: date, protocol: Protocol) -> Profile:
    rng = participant_rng(base, participant.participant_id, "pre")
    sex = participant.sex
    consent = participant.consent_date
    screening = min(consent + timedelta(days=rng.choice((0, 0, 1, 2, 3))), today)
    failure = None
    if rng.random() < SCREEN_FAILURE_RATE:
        failure = rng.choices(SCREEN_FAILURES, weights=(6, 1, 3, 2))[0]
    light = failure is not None and failure[0] == "low_drinking"
    # Heavy drinkers (ALPADIR, Bacloville: about 8-10 standard drinks a day at entry).
    drinks_mean = rng.lognormvariate(math.log(10.5 if sex == "M" else 8.0), 0.3)
    drink_prob = min(0.99, rng.betavariate(9, 1.3))
    if light:
        drinks_mean, drink_prob = rng.uniform(2.5, 4.0), rng.uniform(0.3, 0.6)
    drinks_mean = min(max(drinks_mean, 5.0), 25.0) if not light else drinks_mean
    day0 = screening + timedelta(days=rng.randint(7, 21))
    randomized_at = None
    hour, minute = rng.randint(8, 16), rng.randrange(0, 60, 5)
    if failure is None and day0 < today:
        zone = ZoneInfo(participant.site.timezone)
        local = datetime.combine(day0, time(hour, minute), tzinfo=zone)
        randomized_at = local.astimezone(UTC)
    profile = Profile(
        participant=participant,
        rng_base=base,
        sex=sex,
        age=consent.year - participant.year_of_birth,
        screening=screening,
        randomization=day0 if randomized_at is not None else None,
        randomized_at=randomized_at,
        screen_failure=failure[1] if failure else None,
        screen_failure_kind=failure[0] if failure else None,
        today=today,
        drink_prob=drink_prob,
        drinks_mean=drinks_mean,
        ggt=rng.lognormvariate(math.log(2.0), 0.55),
        alt=min(rng.lognormvariate(math.log(0.9), 0.35), 2.0),
        ast=min(rng.lognormvariate(math.log(1.1), 0.35), 2.6),
        bilirubin=rng.lognormvariate(math.log(0.55), 0.3),
        cdt=rng.uniform(1.6, 4.0),
        craving=min(max(rng.gauss(23, 6), 8), 48),
        ciwa=max(rng.gauss(4, 2.5), 0),
        weight=rng.gauss(82 if sex == "M" else 67, 11),
        systolic=rng.gauss(134, 13),
        diastolic=rng.gauss(84, 8),
        heart_rate=rng.gauss(78, 9),
        miss_rate=rng.choice((0.02, 0.04, 0.06, 0.12)),
        recall_gap_rate=rng.choice((0.03, 0.08, 0.15)),
    )
    if failure is not None and failure[0] == "liver":
        profile.alt = rng.uniform(5.2, 7.0)
        profile.ast = rng.uniform(3.0, 5.0)
    last = (day0 if profile.randomization else screening) - timedelta(days=1)
    first = screening - timedelta(days=protocol.baseline_days)
    profile.calendar = measures.calendar(
        rng, first, last, lambda _day: (profile.drink_prob, profile.drinks_mean)
    )
    return profile


def screening_visit(profile: Profile, protocol: Protocol) -> dict:
    """The screening visit: the 28-day baseline calendar, scales, vitals and full labs."""
    rng = participant_rng(profile.rng_base, profile.pid, "screening")
    screening = profile.screening
    days = sorted(d for d in profile.calendar if d < screening)
    return {
        "visit_code": protocol.visits[0].code,
        "visit_date": screening,
        "status": "completed",
        "missed_reason": None,
        "drinking": [{"day": d, "standard_drinks": profile.calendar[d]} for d in days],
        "ocds": measures.ocds(rng, profile.craving),
        "ciwa": measures.ciwa(rng, profile.ciwa),
        "vitals": measures.vitals(rng, profile, 1.0),
        "labs": measures.labs(rng, profile, 1.0, ("GGT", "ALT", "AST", "bilirubin", "CDT")),
    }


def screening_outcome(profile: Profile, protocol: Protocol) -> tuple[dict, dict | None]:
    """The eligibility answers recorded at screening, and a screen failure's disposition.

    Every criterion is answered as the protocol requires, except the one a screen failure
    fails on; the failure is dated a few days after screening (never after today).
    """
    failed = FAILED_CRITERION.get(profile.screen_failure_kind)
    answers = {
        criterion.code: criterion.required_answer != (criterion.code == failed)
        for criterion in protocol.eligibility_criteria
    }
    if profile.screen_failure is None:
        return answers, None
    day = min(profile.screening + timedelta(days=3), profile.today)
    return answers, {"status": "screen_failure", "date": day, "reason": profile.screen_failure}
