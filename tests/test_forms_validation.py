"""The validation matrix of every captured form (DESIGN section 4, issue 4).

Each rule: the request is refused with the status stated (422 unless noted), the error names
exactly the bad field, and nothing is written (no row in any capture table, no audit row).
Each boundary value: accepted. Corrections (PATCH) re-validate the record as it would be
after the change and need a reason. Runs on SQLite and, with TEST_DATABASE_URL set, on
PostgreSQL; ``test_number_of_validation_cases`` prints how many cases the matrix holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.capture_helpers import (
    CIWA_MAXIMA,
    LAB_UNITS,
    OCDS_ITEMS,
    Enrolled,
    Trial,
    ciwa,
    counts,
    iso,
    lab,
    ocds,
    today,
    vitals,
)

D = timedelta(days=1)


@dataclass(frozen=True)
class Case:
    label: str
    body: Callable[[Enrolled], dict]  # the request body, built for the participant
    field: str | None = None  # the one field the errors must name (refused cases)
    status: int = 422
    prepared: bool = True  # accepted cases: record what the form builds on first
    screening: bool = True  # accepted cases: the participant has a screening visit
    randomized: bool = True  # accepted cases: the participant is randomized (30 days ago)


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


# --- visits and the forms entered with them --------------------------------------------
# The visit under test is titration week 1 (day 7). Baseline is recorded first; for the
# refused cases week 2 is recorded too, early, with one calendar day (day 3) that week 1
# would otherwise cover, so "already recorded" can be tried.


def w1(p: Enrolled, **forms) -> dict:
    return {"visit_code": "titration_w1", "visit_date": iso(p.day0 + 7 * D), **forms}


def days(p: Enrolled, *offsets, drinks=2) -> list[dict]:
    return [{"date": iso(p.day0 + n * D), "standard_drinks": drinks} for n in offsets]


def with_day(p: Enrolled, **entry) -> dict:
    row = {"date": iso(p.day0 + D), "standard_drinks": 2, **entry}
    return w1(p, drinking=[{k: v for k, v in row.items() if v is not ...}])


def with_ocds(**items) -> Callable[[Enrolled], dict]:
    return lambda p: w1(p, ocds={k: v for k, v in {**ocds(1), **items}.items() if v is not ...})


def with_ciwa(**items) -> Callable[[Enrolled], dict]:
    return lambda p: w1(p, ciwa={k: v for k, v in {**ciwa(1), **items}.items() if v is not ...})


def with_vitals(**values) -> Callable[[Enrolled], dict]:
    return lambda p: w1(p, vitals={k: v for k, v in vitals(**values).items() if v is not ...})


def with_lab(**values) -> Callable[[Enrolled], dict]:
    return lambda p: w1(p, labs=[{k: v for k, v in lab(**values).items() if v is not ...}])


LONG = "x" * 2001

VISIT_REFUSED = [
    Case("visit_code missing", lambda p: {"visit_date": iso(p.day0 + 7 * D)}, "visit_code"),
    Case("visit_code unknown", lambda p: {**w1(p), "visit_code": "week_99"}, "visit_code"),
    Case("visit_code empty", lambda p: {**w1(p), "visit_code": ""}, "visit_code"),
    Case("visit_code not text", lambda p: {**w1(p), "visit_code": 7}, "visit_code"),
    Case("status unknown", lambda p: {**w1(p), "status": "done"}, "status"),
    Case("status null", lambda p: {**w1(p), "status": None}, "status"),
    Case("completed without date", lambda p: {"visit_code": "titration_w1"}, "visit_date"),
    Case("date null", lambda p: {**w1(p), "visit_date": None}, "visit_date"),
    Case("date impossible", lambda p: {**w1(p), "visit_date": "2026-02-30"}, "visit_date"),
    Case("date not a date", lambda p: {**w1(p), "visit_date": "last week"}, "visit_date"),
    Case("date tomorrow", lambda p: {**w1(p), "visit_date": iso(today() + D)}, "visit_date"),
    Case(
        "date before consent", lambda p: {**w1(p), "visit_date": iso(p.consent - D)}, "visit_date"
    ),
    Case(
        "date before randomization",
        lambda p: {**w1(p), "visit_date": iso(p.day0 - D)},
        "visit_date",
    ),
    Case(
        "missed without reason",
        lambda p: {"visit_code": "titration_w1", "status": "missed"},
        "missed_reason",
    ),
    Case(
        "missed reason empty",
        lambda p: {"visit_code": "titration_w1", "status": "missed", "missed_reason": ""},
        "missed_reason",
    ),
    Case(
        "missed reason too long",
        lambda p: {"visit_code": "titration_w1", "status": "missed", "missed_reason": LONG},
        "missed_reason",
    ),
    Case(
        "missed with vitals",
        lambda p: {
            "visit_code": "titration_w1",
            "status": "missed",
            "missed_reason": "ill",
            "vitals": vitals(),
        },
        "vitals",
    ),
    Case(
        "missed with a calendar",
        lambda p: {
            "visit_code": "titration_w1",
            "status": "missed",
            "missed_reason": "ill",
            "drinking": days(p, 1),
        },
        "drinking",
    ),
    Case("unknown field", lambda p: {**w1(p), "room": "B12"}, "room"),
    Case("drinking not a list", lambda p: {**w1(p), "drinking": {"day": 1}}, "drinking"),
    Case("ocds not an object", lambda p: {**w1(p), "ocds": "high"}, "ocds"),
    Case("labs not a list", lambda p: {**w1(p), "labs": lab()}, "labs"),
    Case("same code again", lambda p: {**w1(p), "visit_code": "baseline"}, status=409),
]
VISIT_ACCEPTED = [
    Case(
        "baseline on day 0 (window 0/0)",
        lambda p: {"visit_code": "baseline", "visit_date": iso(p.day0)},
        prepared=False,
    ),
    Case(
        "dated today (late, with its reason)",
        lambda p: {**w1(p), "visit_date": iso(today()), "out_of_window_reason": "Seen late"},
    ),
    Case(
        "dated the day of randomization (early, with its reason)",
        lambda p: {**w1(p), "visit_date": iso(p.day0), "out_of_window_reason": "Seen early"},
    ),
    Case(
        "missed with reason",
        lambda p: {"visit_code": "titration_w1", "status": "missed", "missed_reason": "ill"},
    ),
    Case(
        "missed reason 2000 characters",
        lambda p: {"visit_code": "titration_w1", "status": "missed", "missed_reason": "y" * 2000},
    ),
    Case(
        "screening on the consent day",
        lambda p: {"visit_code": "screening", "visit_date": iso(p.consent)},
        prepared=False,
        screening=False,
        randomized=False,
    ),
]

DRINKING_REFUSED = [
    Case("61 drinks", lambda p: with_day(p, standard_drinks=61), "drinking.0.standard_drinks"),
    Case(
        "60.01 drinks", lambda p: with_day(p, standard_drinks=60.01), "drinking.0.standard_drinks"
    ),
    Case("-1 drinks", lambda p: with_day(p, standard_drinks=-1), "drinking.0.standard_drinks"),
    Case(
        "-0.01 drinks", lambda p: with_day(p, standard_drinks=-0.01), "drinking.0.standard_drinks"
    ),
    Case(
        "drinks not a number",
        lambda p: with_day(p, standard_drinks="many"),
        "drinking.0.standard_drinks",
    ),
    Case("drinks NaN", lambda p: with_day(p, standard_drinks="NaN"), "drinking.0.standard_drinks"),
    Case(
        "drinks boolean", lambda p: with_day(p, standard_drinks=True), "drinking.0.standard_drinks"
    ),
    Case("drinks null", lambda p: with_day(p, standard_drinks=None), "drinking.0.standard_drinks"),
    Case(
        "drinks missing", lambda p: with_day(p, standard_drinks=...), "drinking.0.standard_drinks"
    ),
    Case("date missing", lambda p: with_day(p, date=...), "drinking.0.date"),
    Case("date not a date", lambda p: with_day(p, date="yesterday"), "drinking.0.date"),
    Case(
        "date before the period (the previous visit's eve)",
        lambda p: with_day(p, date=iso(p.day0 - D)),
        "drinking.0.date",
    ),
    Case(
        "date is the visit day", lambda p: with_day(p, date=iso(p.day0 + 7 * D)), "drinking.0.date"
    ),
    Case("date in the future", lambda p: with_day(p, date=iso(today() + D)), "drinking.0.date"),
    Case(
        "same day twice in one visit",
        lambda p: w1(p, drinking=days(p, 1, 2, 1)),
        "drinking.2.date",
    ),
    Case(
        "day recorded at another visit", lambda p: w1(p, drinking=days(p, 0, 3)), "drinking.1.date"
    ),
    Case("unknown field in a day", lambda p: with_day(p, note="party"), "drinking.0.note"),
    Case(
        "more than 400 days",
        lambda p: w1(p, drinking=[{"date": iso(p.day0), "standard_drinks": 1}] * 401),
        "drinking",
    ),
]
DRINKING_ACCEPTED = [
    Case("0 drinks", lambda p: w1(p, drinking=days(p, 1, drinks=0))),
    Case("60 drinks", lambda p: w1(p, drinking=days(p, 1, drinks=60))),
    Case("half a drink", lambda p: w1(p, drinking=days(p, 1, drinks=0.5))),
    Case("first day of the period (previous visit day)", lambda p: w1(p, drinking=days(p, 0))),
    Case("last day of the period (visit eve)", lambda p: w1(p, drinking=days(p, 6))),
    Case("the whole period", lambda p: w1(p, drinking=days(p, *range(7)))),
]

OCDS_REFUSED = [
    *(Case(f"{item} = 5", with_ocds(**{item: 5}), f"ocds.{item}") for item in OCDS_ITEMS),
    Case("item_1 = -1", with_ocds(item_1=-1), "ocds.item_1"),
    Case("item_2 = 2.5", with_ocds(item_2=2.5), "ocds.item_2"),
    Case("item_3 as text", with_ocds(item_3="3"), "ocds.item_3"),
    Case("item_4 boolean", with_ocds(item_4=True), "ocds.item_4"),
    Case("item_5 null", with_ocds(item_5=None), "ocds.item_5"),
    Case("item_14 missing", with_ocds(item_14=...), "ocds.item_14"),
    Case("item_15 unknown", with_ocds(item_15=1), "ocds.item_15"),
    Case("total is derived, not entered", with_ocds(total=14), "ocds.total"),
]
OCDS_ACCEPTED = [
    Case("every item 0", lambda p: w1(p, ocds=ocds(0))),
    Case("every item 4", lambda p: w1(p, ocds=ocds(4))),
    Case("mixed 0 and 4", lambda p: w1(p, ocds=ocds([0, 4] * 7))),
]

CIWA_REFUSED = [
    *(
        Case(f"{item} = {top + 1}", with_ciwa(**{item: top + 1}), f"ciwa.{item}")
        for item, top in CIWA_MAXIMA.items()
    ),
    Case("tremor = -1", with_ciwa(tremor=-1), "ciwa.tremor"),
    Case("headache = 1.5", with_ciwa(headache=1.5), "ciwa.headache"),
    Case("anxiety as text", with_ciwa(anxiety="2"), "ciwa.anxiety"),
    Case("orientation missing", with_ciwa(orientation=...), "ciwa.orientation"),
    Case("pulse unknown", with_ciwa(pulse=88), "ciwa.pulse"),
    Case("total is derived, not entered", with_ciwa(total=10), "ciwa.total"),
]
CIWA_ACCEPTED = [
    Case("every item 0", lambda p: w1(p, ciwa=ciwa(0))),
    Case("orientation 4, others 7 (total 67)", lambda p: w1(p, ciwa=ciwa(CIWA_MAXIMA))),
]

VITALS_REFUSED = [
    Case("systolic 59", with_vitals(systolic_bp=59, diastolic_bp=40), "vitals.systolic_bp"),
    Case("systolic 261", with_vitals(systolic_bp=261), "vitals.systolic_bp"),
    Case("systolic 120.5", with_vitals(systolic_bp=120.5), "vitals.systolic_bp"),
    Case("systolic null", with_vitals(systolic_bp=None), "vitals.systolic_bp"),
    Case("systolic missing", with_vitals(systolic_bp=...), "vitals.systolic_bp"),
    Case("diastolic 29", with_vitals(diastolic_bp=29), "vitals.diastolic_bp"),
    Case("diastolic 161", with_vitals(systolic_bp=200, diastolic_bp=161), "vitals.diastolic_bp"),
    Case(
        "diastolic equal to systolic",
        with_vitals(systolic_bp=120, diastolic_bp=120),
        "vitals.diastolic_bp",
    ),
    Case(
        "diastolic above systolic",
        with_vitals(systolic_bp=100, diastolic_bp=120),
        "vitals.diastolic_bp",
    ),
    Case("heart rate 29", with_vitals(heart_rate=29), "vitals.heart_rate"),
    Case("heart rate 221", with_vitals(heart_rate=221), "vitals.heart_rate"),
    Case("heart rate as text", with_vitals(heart_rate="72"), "vitals.heart_rate"),
    Case("heart rate missing", with_vitals(heart_rate=...), "vitals.heart_rate"),
    Case("weight 29.9", with_vitals(weight_kg=29.9), "vitals.weight_kg"),
    Case("weight 300.1", with_vitals(weight_kg=300.1), "vitals.weight_kg"),
    Case("weight as text", with_vitals(weight_kg="heavy"), "vitals.weight_kg"),
    Case("temperature unknown", with_vitals(temperature=37.2), "vitals.temperature"),
]
VITALS_ACCEPTED = [
    Case(
        "all at their minimum (60/30, 30 bpm, 30 kg)",
        with_vitals(systolic_bp=60, diastolic_bp=30, heart_rate=30, weight_kg=30),
    ),
    Case(
        "all at their maximum (260/160, 220 bpm, 300 kg)",
        with_vitals(systolic_bp=260, diastolic_bp=160, heart_rate=220, weight_kg=300),
    ),
    Case("diastolic one below systolic", with_vitals(systolic_bp=120, diastolic_bp=119)),
    Case("weight not taken (left out)", with_vitals(weight_kg=...)),
    Case("weight not taken (null)", with_vitals(weight_kg=None)),
]

LABS_REFUSED = [
    Case("value 0", with_lab(value=0), "labs.0.value"),
    Case("value negative", with_lab(value=-5), "labs.0.value"),
    Case("value as text", with_lab(value="high"), "labs.0.value"),
    Case("value missing", with_lab(value=...), "labs.0.value"),
    Case("upper limit 0", with_lab(upper_limit_normal=0), "labs.0.upper_limit_normal"),
    Case("upper limit negative", with_lab(upper_limit_normal=-1), "labs.0.upper_limit_normal"),
    Case("test unknown", lambda p: w1(p, labs=[{**lab(), "test": "HbA1c"}]), "labs.0.test"),
    Case("test in lower case", lambda p: w1(p, labs=[{**lab(), "test": "ggt"}]), "labs.0.test"),
    Case("GGT in %", with_lab(test="GGT", unit="%"), "labs.0.unit"),
    Case("ALT in mg/dL", with_lab(test="ALT", unit="mg/dL"), "labs.0.unit"),
    Case("AST in umol/L", with_lab(test="AST", unit="umol/L"), "labs.0.unit"),
    Case("bilirubin in U/L", with_lab(test="bilirubin", unit="U/L"), "labs.0.unit"),
    Case("CDT in U/L", with_lab(test="CDT", unit="U/L"), "labs.0.unit"),
    Case("unit missing", lambda p: w1(p, labs=[{**lab(), "unit": ""}]), "labs.0.unit"),
    Case(
        "same test twice", lambda p: w1(p, labs=[lab("ALT"), lab("GGT"), lab("ALT")]), "labs.2.test"
    ),
    Case("unknown field", lambda p: w1(p, labs=[{**lab(), "flag": "H"}]), "labs.0.flag"),
    Case("more than 20 results", lambda p: w1(p, labs=[lab()] * 21), "labs"),
]
LABS_ACCEPTED = [
    Case("a value just above 0", with_lab(value=0.001, upper_limit_normal=0.01)),
    Case("far above the upper limit", with_lab(test="ALT", value=900, upper_limit_normal=45)),
    Case(
        "every test in its first unit",
        lambda p: w1(p, labs=[lab(test, unit=units[0]) for test, units in LAB_UNITS.items()]),
    ),
    Case(
        "every test in its other unit",
        lambda p: w1(p, labs=[lab(test, unit=units[-1]) for test, units in LAB_UNITS.items()]),
    ),
]


# --- forms on their own endpoints ------------------------------------------------------
# Dosing: the refused cases run after a first record (day 0, 3 tablets); the request under
# test is day 1.


def dose(p: Enrolled, **values) -> dict:
    body = {"date": iso(p.day0 + D), "tablets_per_day": 3, **values}
    return {k: v for k, v in body.items() if v is not ...}


DOSING_REFUSED = [
    Case(
        "10 tablets", lambda p: dose(p, tablets_per_day=10, change_reason="up"), "tablets_per_day"
    ),
    Case(
        "21 tablets", lambda p: dose(p, tablets_per_day=21, change_reason="up"), "tablets_per_day"
    ),
    Case("-1 tablets", lambda p: dose(p, tablets_per_day=-1, change_reason="x"), "tablets_per_day"),
    Case("2.5 tablets", lambda p: dose(p, tablets_per_day=2.5), "tablets_per_day"),
    Case("tablets as text", lambda p: dose(p, tablets_per_day="3"), "tablets_per_day"),
    Case("tablets null", lambda p: dose(p, tablets_per_day=None), "tablets_per_day"),
    Case("tablets missing", lambda p: dose(p, tablets_per_day=...), "tablets_per_day"),
    Case("date missing", lambda p: dose(p, date=...), "date"),
    Case("date not a date", lambda p: dose(p, date="monday"), "date"),
    Case("date tomorrow", lambda p: dose(p, date=iso(today() + D)), "date"),
    Case("date before randomization", lambda p: dose(p, date=iso(p.day0 - D)), "date"),
    Case("date already recorded", lambda p: dose(p, date=iso(p.day0)), "date"),
    Case("dose change without reason", lambda p: dose(p, tablets_per_day=4), "change_reason"),
    Case(
        "dose change, reason null",
        lambda p: dose(p, tablets_per_day=2, change_reason=None),
        "change_reason",
    ),
    Case("change reason empty", lambda p: dose(p, change_reason=""), "change_reason"),
    Case("tablets returned -1", lambda p: dose(p, tablets_returned=-1), "tablets_returned"),
    Case("tablets returned 1.5", lambda p: dose(p, tablets_returned=1.5), "tablets_returned"),
    Case("a dose in mg", lambda p: dose(p, mg=60), "mg"),
]
DOSING_ACCEPTED = [
    Case("0 tablets", lambda p: dose(p, tablets_per_day=0), prepared=False),
    Case("9 tablets", lambda p: dose(p, tablets_per_day=9), prepared=False),
    Case("on day 0", lambda p: dose(p, date=iso(p.day0)), prepared=False),
    Case("today", lambda p: dose(p, date=iso(today())), prepared=False),
    Case("0 tablets returned", lambda p: dose(p, tablets_returned=0), prepared=False),
    Case("the same dose, no reason", lambda p: dose(p)),
    Case("a change with its reason", lambda p: dose(p, tablets_per_day=9, change_reason="titr.")),
]


def disposition(p: Enrolled, **values) -> dict:
    body = {"status": "completed", "date": iso(today()), **values}
    return {k: v for k, v in body.items() if v is not ...}


DISPOSITION_REFUSED = [
    Case("status unknown", lambda p: disposition(p, status="finished"), "status"),
    Case("status missing", lambda p: disposition(p, status=...), "status"),
    Case("date missing", lambda p: disposition(p, date=...), "date"),
    Case("date tomorrow", lambda p: disposition(p, date=iso(today() + D)), "date"),
    Case("date before consent", lambda p: disposition(p, date=iso(p.consent - D)), "date"),
    Case("withdrew without reason", lambda p: disposition(p, status="withdrew"), "reason"),
    Case(
        "discontinued without reason",
        lambda p: disposition(p, status="discontinued_treatment"),
        "reason",
    ),
    Case(
        "withdrew, reason null", lambda p: disposition(p, status="withdrew", reason=None), "reason"
    ),
    Case("reason empty", lambda p: disposition(p, status="withdrew", reason=""), "reason"),
    Case("unknown field", lambda p: disposition(p, notes="n/a"), "notes"),
]
DISPOSITION_ACCEPTED = [
    Case("completed", lambda p: disposition(p)),
    Case(
        "discontinued with reason",
        lambda p: disposition(p, status="discontinued_treatment", reason="sedation"),
    ),
    Case("withdrew with reason", lambda p: disposition(p, status="withdrew", reason="moved")),
    Case("lost to follow-up", lambda p: disposition(p, status="lost_to_follow_up")),
    Case("death", lambda p: disposition(p, status="death")),
    Case(
        "screen failure on the consent day",
        lambda p: disposition(p, status="screen_failure", reason="E1", date=iso(p.consent)),
        screening=False,
        randomized=False,
    ),
]


def deviation(p: Enrolled, **values) -> dict:
    body = {"category": "procedure", "description": "Blood drawn late", "date": iso(today())}
    body.update(values)
    return {k: v for k, v in body.items() if v is not ...}


DEVIATION_REFUSED = [
    Case("category unknown", lambda p: deviation(p, category="minor"), "category"),
    Case("category missing", lambda p: deviation(p, category=...), "category"),
    Case("description empty", lambda p: deviation(p, description=""), "description"),
    Case("description missing", lambda p: deviation(p, description=...), "description"),
    Case("description too long", lambda p: deviation(p, description="d" * 4001), "description"),
    Case("date tomorrow", lambda p: deviation(p, date=iso(today() + D)), "date"),
    Case("date missing", lambda p: deviation(p, date=...), "date"),
    Case("date not a date", lambda p: deviation(p, date="soon"), "date"),
    Case("automatic is not entered", lambda p: deviation(p, automatic=True), "automatic"),
    Case("unknown field", lambda p: deviation(p, severity="major"), "severity"),
]
DEVIATION_ACCEPTED = [
    *(
        Case(f"category {c}", lambda p, c=c: deviation(p, category=c))
        for c in ("visit_out_of_window", "eligibility", "consent", "study_drug", "procedure")
    ),
    Case(
        "category other, 4000 characters",
        lambda p: deviation(p, category="other", description="d" * 4000),
    ),
    Case("dated long ago", lambda p: deviation(p, date=iso(p.consent - 400 * D))),
]

MATRIX = {
    "visit": (VISIT_REFUSED, VISIT_ACCEPTED),
    "drinking_day": (DRINKING_REFUSED, DRINKING_ACCEPTED),
    "ocds": (OCDS_REFUSED, OCDS_ACCEPTED),
    "ciwa": (CIWA_REFUSED, CIWA_ACCEPTED),
    "vitals": (VITALS_REFUSED, VITALS_ACCEPTED),
    "lab_result": (LABS_REFUSED, LABS_ACCEPTED),
    "dosing": (DOSING_REFUSED, DOSING_ACCEPTED),
    "disposition": (DISPOSITION_REFUSED, DISPOSITION_ACCEPTED),
    "protocol_deviation": (DEVIATION_REFUSED, DEVIATION_ACCEPTED),
}
VISIT_FORMS = ("visit", "drinking_day", "ocds", "ciwa", "vitals", "lab_result")


def path_for(form: str, p: Enrolled) -> str:
    if form in VISIT_FORMS:
        return f"/participants/{p.pid}/visits"
    return (
        f"/participants/{p.pid}/"
        + {
            "dosing": "dosing",
            "disposition": "disposition",
            "protocol_deviation": "deviations",
        }[form]
    )


def prepare(trial: Trial, form: str, p: Enrolled, *, refused: bool) -> None:
    """Record what the cases of a form build on (see the comments above each block)."""
    if form in VISIT_FORMS:
        assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
        if refused:
            early = trial.visit(p.pid, "titration_w2", p.day0 + 14 * D, drinking=days(p, 3))
            assert early.status_code == 201, early.json
    elif form == "dosing":
        response = trial.post(path_for(form, p), {"date": iso(p.day0), "tablets_per_day": 3})
        assert response.status_code == 201, response.json


def check_refused(trial: Trial, form: str, p: Enrolled, case: Case) -> str | None:
    """Return what went wrong, or None."""
    before = counts()
    response = trial.post(path_for(form, p), case.body(p))
    problems = []
    if response.status_code != case.status:
        problems.append(f"status {response.status_code}, expected {case.status}")
    body = response.json or {}
    named = {key.removesuffix("._schema") for key in body.get("errors", {})}
    if case.status == 422 and named != {case.field}:
        problems.append(f"errors name {sorted(body.get('errors', {}))}, expected [{case.field}]")
    if counts() != before:
        problems.append("something was written")
    return f"{form}: {case.label}: " + "; ".join(problems) if problems else None


@pytest.mark.parametrize("form", list(MATRIX))
def test_each_rule_is_refused_naming_the_field_and_writing_nothing(trial, form):
    p = trial.enrol(day0_ago=30)
    prepare(trial, form, p, refused=True)
    failures = [f for case in MATRIX[form][0] if (f := check_refused(trial, form, p, case))]
    assert failures == []


@pytest.mark.parametrize("form", list(MATRIX))
def test_each_boundary_value_is_accepted(trial, form):
    failures = []
    for case in MATRIX[form][1]:
        p = trial.enrol(day0_ago=30 if case.randomized else None, screening=case.screening)
        if case.prepared:
            prepare(trial, form, p, refused=False)
        before = counts()
        response = trial.post(path_for(form, p), case.body(p))
        if response.status_code != 201:
            failures.append(f"{form}: {case.label}: {response.status_code} {response.json}")
        elif counts()["audit_events"] <= before["audit_events"]:
            failures.append(f"{form}: {case.label}: accepted without an audit row")
    assert failures == []


# --- corrections -----------------------------------------------------------------------


@pytest.fixture
def records(trial):
    """One record of every form at site S01, keyed by path, and the participant."""
    p = trial.enrol(day0_ago=30)
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    visit = trial.visit(
        p.pid,
        "titration_w1",
        p.day0 + 7 * D,
        drinking=days(p, 0, 1, 2),
        ocds=ocds(2),
        ciwa=ciwa(2),
        vitals=vitals(),
        labs=[lab("GGT"), lab("bilirubin")],
    ).json
    post = trial.post
    first = post(f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3})
    second = post(
        f"/participants/{p.pid}/dosing",
        {"date": iso(p.day0 + 3 * D), "tablets_per_day": 4, "change_reason": "titration"},
    )
    dispo = post(
        f"/participants/{p.pid}/disposition",
        {"status": "withdrew", "date": iso(today()), "reason": "moved"},
    )
    dev = post(f"/participants/{p.pid}/deviations", deviation(p))
    ids = {
        "visits": visit["id"],
        "drinking-days": visit["drinking"][2]["id"],
        "ocds": visit["ocds"]["id"],
        "ciwa": visit["ciwa"]["id"],
        "vitals": visit["vitals"]["id"],
        "labs": visit["labs"][0]["id"],  # GGT (bilirubin is the visit's other result)
        "dosing": second.json["id"],
        "dosing-first": first.json["id"],
        "dispositions": dispo.json["id"],
        "deviations": dev.json["id"],
    }
    return p, ids


def r(body: dict, reason="correction") -> dict:
    return {**body, "reason": reason} if reason is not None else body


PATCH_REFUSED = [
    # (path, body builder, field)
    ("vitals", lambda p: r({"diastolic_bp": 130}), "diastolic_bp"),  # systolic is 125
    ("vitals", lambda p: r({"systolic_bp": 70}), "diastolic_bp"),  # diastolic is 80
    ("vitals", lambda p: r({"systolic_bp": 261}), "systolic_bp"),
    ("vitals", lambda p: r({"weight_kg": 20}), "weight_kg"),
    ("vitals", lambda p: r({"heart_rate": None}), "heart_rate"),
    ("vitals", lambda p: r({"heart_rate": 64}, reason=None), "reason"),
    ("vitals", lambda p: r({"heart_rate": 64}, reason=""), "reason"),
    ("vitals", lambda p: r({"heart_rate": 64}, reason="   "), "reason"),
    ("vitals", lambda p: r({"colour": "red"}), "colour"),
    ("ocds", lambda p: r({"item_1": 5}), "item_1"),
    ("ocds", lambda p: r({"item_1": None}), "item_1"),
    ("ocds", lambda p: r({"total": 3}), "total"),
    ("ciwa", lambda p: r({"orientation": 5}), "orientation"),
    ("ciwa", lambda p: r({"tremor": 8}), "tremor"),
    ("drinking-days", lambda p: r({"standard_drinks": 61}), "standard_drinks"),
    ("drinking-days", lambda p: r({"date": iso(p.day0 - D)}), "date"),
    ("drinking-days", lambda p: r({"date": iso(p.day0 + 7 * D)}), "date"),
    ("drinking-days", lambda p: r({"date": iso(p.day0)}), "date"),  # another row's day
    ("labs", lambda p: r({"unit": "%"}), "unit"),
    ("labs", lambda p: r({"test": "CDT"}), "unit"),  # U/L stays, CDT is in %
    ("labs", lambda p: r({"test": "bilirubin", "unit": "umol/L"}), "test"),  # already there
    ("labs", lambda p: r({"value": 0}), "value"),
    ("labs", lambda p: r({"test": "HbA1c"}), "test"),
    ("dosing", lambda p: r({"tablets_per_day": 10}), "tablets_per_day"),
    ("dosing", lambda p: r({"change_reason": None}), "change_reason"),  # 3 -> 4 tablets
    ("dosing", lambda p: r({"date": iso(p.day0 - D)}), "date"),
    ("dosing", lambda p: r({"date": iso(p.day0)}), "date"),  # the first record's date
    ("dosing", lambda p: r({"date": iso(today() + D)}), "date"),
    ("dispositions", lambda p: r({"disposition_reason": None}), "disposition_reason"),
    ("dispositions", lambda p: r({"disposition_reason": ""}), "disposition_reason"),
    ("dispositions", lambda p: r({"status": "finished"}), "status"),
    ("dispositions", lambda p: r({"date": iso(today() + D)}), "date"),
    ("deviations", lambda p: r({"date": iso(today() + D)}), "date"),
    ("deviations", lambda p: r({"description": ""}), "description"),
    ("visits", lambda p: r({"visit_date": iso(today() + D)}), "visit_date"),
    ("visits", lambda p: r({"visit_date": iso(p.day0 - D)}), "visit_date"),
    ("visits", lambda p: r({"visit_date": None}), "visit_date"),
    ("visits", lambda p: r({"status": "missed", "missed_reason": "ill"}), "status"),  # has forms
    ("visits", lambda p: r({"status": "missed"}), "missed_reason"),
    ("visits", lambda p: r({"visit_code": "week_8"}), "visit_code"),  # not correctable
    ("visits", lambda p: r({"visit_date": iso(p.day0 + 8 * D)}, reason=None), "reason"),
]
PATCH_ACCEPTED = [
    ("vitals", lambda p: r({"diastolic_bp": 124})),  # one below systolic
    ("vitals", lambda p: r({"weight_kg": None})),  # to empty
    ("vitals", lambda p: r({"weight_kg": 300})),  # and back
    ("vitals", lambda p: r({"systolic_bp": 260, "diastolic_bp": 160, "heart_rate": 220})),
    ("ocds", lambda p: r({"item_1": 0, "item_14": 4})),
    ("ciwa", lambda p: r({"orientation": 4, "tremor": 7})),
    ("drinking-days", lambda p: r({"standard_drinks": 60})),
    ("drinking-days", lambda p: r({"standard_drinks": 0, "date": iso(p.day0 + 6 * D)})),
    ("labs", lambda p: r({"test": "CDT", "unit": "%", "value": 1.9})),
    ("dosing", lambda p: r({"tablets_per_day": 9})),  # the change reason stands
    ("dosing", lambda p: r({"tablets_returned": 0})),
    ("dispositions", lambda p: r({"disposition_reason": "moved abroad"})),
    ("dispositions", lambda p: r({"status": "lost_to_follow_up", "disposition_reason": None})),
    ("dispositions", lambda p: r({"status": "withdrew", "disposition_reason": "moved"})),
    ("deviations", lambda p: r({"category": "other"})),
    ("visits", lambda p: r({"visit_date": iso(p.day0 + 8 * D)})),
]


def test_corrections_are_revalidated_and_need_a_reason(trial, records):
    p, ids = records
    failures = []
    for path, build, field in PATCH_REFUSED:
        url = f"/{path}/{ids[path]}"
        stored = trial.get(url).json
        before = counts()
        response = trial.patch(url, build(p))
        errors = (response.json or {}).get("errors", {})
        if response.status_code != 422 or set(errors) != {field}:
            failures.append(f"PATCH {path} {build(p)}: {response.status_code} {errors}")
        if counts() != before or trial.get(url).json != stored:
            failures.append(f"PATCH {path} {build(p)}: something changed")
    assert failures == []


def test_corrections_accept_boundary_values(trial, records):
    p, ids = records
    failures = []
    for path, build in PATCH_ACCEPTED:
        url = f"/{path}/{ids[path]}"
        version = trial.get(url).json["version"]
        response = trial.patch(url, build(p))
        if response.status_code != 200 or response.json["version"] != version + 1:
            failures.append(f"PATCH {path} {build(p)}: {response.status_code} {response.json}")
    assert failures == []


def test_a_disposition_reason_is_corrected_next_to_the_reason_for_the_change(trial, records):
    """The PATCH body's "reason" says why; the disposition's own reason has its own key."""
    from sqlalchemy import select

    from trial.audit.models import AuditEvent
    from trial.extensions import db

    p, ids = records
    url = f"/dispositions/{ids['dispositions']}"
    response = trial.patch(url, {"disposition_reason": "side effects", "reason": "site letter"})
    assert response.status_code == 200, response.json
    assert response.json["reason"] == "side effects"
    event = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "disposition", AuditEvent.action == "update"
        )
    ).one()
    assert (event.field, event.old_value, event.new_value, event.reason) == (
        "reason",
        '"moved"',
        '"side effects"',
        "site letter",
    )


def test_a_correction_that_changes_nothing_says_so_and_writes_nothing(trial, records):
    """Not a 200 that drops its reason: a 422 of its own code (tests/test_correction_versions.py
    covers every record type)."""
    p, ids = records
    url = f"/vitals/{ids['vitals']}"
    stored = trial.get(url).json
    before = counts()
    same = trial.patch(url, {"heart_rate": stored["heart_rate"], "reason": "checked"})
    assert same.status_code == 422 and same.json["code"] == "no_change", same.json
    assert counts() == before and trial.get(url).json == stored
    # The reason is part of every PATCH body all the same.
    assert trial.patch(url, {}).status_code == 422


def test_number_of_validation_cases(capsys):
    refused = sum(len(cases) for cases, _ in MATRIX.values()) + len(PATCH_REFUSED)
    accepted = sum(len(cases) for _, cases in MATRIX.values()) + len(PATCH_ACCEPTED)
    with capsys.disabled():
        print(
            f"\nvalidation cases: {refused + accepted} "
            f"({refused} refused, {accepted} accepted; {len(MATRIX)} forms + corrections)"
        )
    assert refused >= 150 and accepted >= 40
