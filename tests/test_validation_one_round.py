"""Validation in one round (issue 22, item 7): every error of a body in one 422.

A body with a schema error (a type, a range, a required field) and a rule error (checked by
the service against what it holds: the site's today, the participant's consent, the first
dose, the stored record) names both. Each case of the matrix holds one of each, on every
body that has rules beyond its schema; nothing is written. The negative control turns the
mechanism off (``trial.validation.rule_check_for`` finds no rule check, as before): every
case then names the schema field only, so the matrix would catch the old behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.capture_helpers import Enrolled, Trial, ciwa, counts, iso, lab, ocds, today, vitals
from trial import validation

D = timedelta(days=1)
FUTURE = today() + 400 * D


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def setup(trial):
    """A randomized participant (day 0 30 days ago) with one record of every kind."""
    p = trial.enrol(day0_ago=30)
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    visit = trial.visit(
        p.pid,
        "titration_w1",
        p.day0 + 7 * D,
        drinking=[{"date": iso(p.day0 + n * D), "standard_drinks": 2} for n in (0, 1, 2)],
        ocds=ocds(2),
        ciwa=ciwa(2),
        vitals=vitals(),
        labs=[lab("GGT")],
    ).json
    post = trial.post
    first = post(f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3})
    assert first.status_code == 201, first.json
    ae = post(
        f"/participants/{p.pid}/adverse-events",
        {
            "term": "Somnolence",
            "onset_date": iso(p.day0 + 2 * D),
            "grade": 2,
            "serious": False,
            "relatedness": "possible",
            "action_taken": "dose_reduced",
            "outcome": "recovered",
        },
    )
    assert ae.status_code == 201, ae.json
    dispo = post(
        f"/participants/{p.pid}/disposition",
        {"status": "withdrew", "date": iso(today()), "reason": "moved"},
    )
    dev = post(
        f"/participants/{p.pid}/deviations",
        {"category": "procedure", "description": "Blood drawn late", "date": iso(today())},
    )
    ids = {
        "undisposed": trial.enrol(day0_ago=10, screening=False).pid,  # no disposition yet
        "visit": visit["id"],
        "drinking": visit["drinking"][2]["id"],
        "vitals": visit["vitals"]["id"],
        "lab": visit["labs"][0]["id"],
        "dosing": first.json["id"],
        "ae": ae.json["id"],
        "disposition": dispo.json["id"],
        "deviation": dev.json["id"],
    }
    return p, ids


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    path: Callable[[Enrolled, dict], str]
    body: Callable[[Enrolled], dict]
    schema_field: str  # refused by the schema
    rule_field: str  # refused by the service's rule
    role: str = "coordinator"


def participant_path(suffix: str) -> Callable[[Enrolled, dict], str]:
    return lambda p, ids: f"/participants/{p.pid}/{suffix}"


def record_path(prefix: str, key: str) -> Callable[[Enrolled, dict], str]:
    return lambda p, ids: f"/{prefix}/{ids[key]}"


def ae(p: Enrolled, **values) -> dict:
    body = {
        "term": "Dizziness",
        "onset_date": iso(p.day0 + 3 * D),
        "grade": 1,
        "serious": False,
        "relatedness": "unlikely",
        "action_taken": "none",
        "outcome": "recovered",
        **values,
    }
    return {k: v for k, v in body.items() if v is not ...}


def w2(p: Enrolled, **values) -> dict:
    return {"visit_code": "titration_w2", "visit_date": iso(p.day0 + 14 * D), **values}


CASES = [
    Case(
        "participant: sex X, consent in the future (the issue's example)",
        "POST",
        lambda p, ids: "/participants",
        lambda p: {"site": "S01", "sex": "X", "year_of_birth": "old", "consent_date": "2999-01-01"},
        "sex",
        "consent_date",
    ),
    Case(
        "participant: birth year text, unknown site",
        "POST",
        lambda p, ids: "/participants",
        lambda p: {"site": "S99", "sex": "F", "year_of_birth": "old", "consent_date": "2026-01-02"},
        "year_of_birth",
        "site",
    ),
    Case(
        "participant: sex missing, age outside the protocol",
        "POST",
        lambda p, ids: "/participants",
        lambda p: {"site": "S01", "year_of_birth": 2020, "consent_date": iso(today())},
        "sex",
        "year_of_birth",
    ),
    Case(
        "AE: serious with a bad grade and no criterion (the issue's example)",
        "POST",
        participant_path("adverse-events"),
        lambda p: ae(p, grade=9, serious=True),
        "grade",
        "seriousness_criteria",
    ),
    Case(
        "AE: unknown relatedness, onset in the future",
        "POST",
        participant_path("adverse-events"),
        lambda p: ae(p, relatedness="maybe", onset_date=iso(FUTURE)),
        "relatedness",
        "onset_date",
    ),
    Case(
        "AE correction: unknown outcome, end before onset",
        "PATCH",
        record_path("adverse-events", "ae"),
        lambda p: {"outcome": "gone", "end_date": iso(p.day0), "reason": "source checked"},
        "outcome",
        "end_date",
    ),
    Case(
        "AE correction: no reason, grade 5 without a fatal outcome",
        "PATCH",
        record_path("adverse-events", "ae"),
        lambda p: {"grade": 5},
        "reason",
        "outcome",
    ),
    Case(
        "visit: OCDS item out of range, visit in the future",
        "POST",
        participant_path("visits"),
        lambda p: w2(p, visit_date=iso(FUTURE), ocds={**ocds(1), "item_1": 9}),
        "ocds.item_1",
        "visit_date",
    ),
    Case(
        "visit: a day's drinks not a number, another day in the future",
        "POST",
        participant_path("visits"),
        lambda p: w2(
            p,
            drinking=[
                {"date": iso(p.day0 + 8 * D), "standard_drinks": "two"},
                {"date": iso(p.day0 + 20 * D), "standard_drinks": 1},
            ],
        ),
        "drinking.0.standard_drinks",
        "drinking.1.date",
    ),
    Case(
        "visit: heart rate out of range, diastolic above systolic",
        "POST",
        participant_path("visits"),
        lambda p: w2(p, vitals=vitals(heart_rate=999, diastolic_bp=130, systolic_bp=120)),
        "vitals.heart_rate",
        "vitals.diastolic_bp",
    ),
    Case(
        "visit: a lab value below zero, another lab in a wrong unit",
        "POST",
        participant_path("visits"),
        lambda p: w2(p, labs=[lab("GGT", value=-1), lab("CDT", unit="U/L")]),
        "labs.0.value",
        "labs.1.unit",
    ),
    Case(
        "visit: missed reason too long, a missed visit given vitals",
        "POST",
        participant_path("visits"),
        lambda p: w2(
            p, status="missed", visit_date=None, missed_reason="x" * 2001, vitals=vitals()
        ),
        "missed_reason",
        "vitals",
    ),
    Case(
        "visit correction: no reason, date in the future",
        "PATCH",
        record_path("visits", "visit"),
        lambda p: {"visit_date": iso(FUTURE)},
        "reason",
        "visit_date",
    ),
    Case(
        "visit correction: unknown status, date before randomization",
        "PATCH",
        record_path("visits", "visit"),
        lambda p: {"status": "late", "visit_date": iso(p.day0 - D), "reason": "typo"},
        "status",
        "visit_date",
    ),
    Case(
        "drinking-day correction: blank reason, date in the future",
        "PATCH",
        record_path("drinking-days", "drinking"),
        lambda p: {"date": iso(FUTURE), "reason": " "},
        "reason",
        "date",
    ),
    Case(
        "vitals correction: heart rate text, diastolic above the stored systolic",
        "PATCH",
        record_path("vitals", "vitals"),
        lambda p: {"heart_rate": "fast", "diastolic_bp": 150, "reason": "typo"},
        "heart_rate",
        "diastolic_bp",
    ),
    Case(
        "lab correction: value zero, unit of another test",
        "PATCH",
        record_path("labs", "lab"),
        lambda p: {"value": 0, "unit": "%", "reason": "typo"},
        "value",
        "unit",
    ),
    Case(
        "dosing: tablets returned below zero, date in the future",
        "POST",
        participant_path("dosing"),
        lambda p: {"date": iso(FUTURE), "tablets_per_day": 3, "tablets_returned": -1},
        "tablets_returned",
        "date",
    ),
    Case(
        "dosing: tablets returned text, a change of dose without its reason",
        "POST",
        participant_path("dosing"),
        lambda p: {"date": iso(p.day0 + 4 * D), "tablets_per_day": 5, "tablets_returned": "x"},
        "tablets_returned",
        "change_reason",
    ),
    Case(
        "dosing correction: no reason, more tablets than the protocol's maximum",
        "PATCH",
        record_path("dosing", "dosing"),
        lambda p: {"tablets_per_day": 15},
        "reason",
        "tablets_per_day",
    ),
    Case(
        "disposition: date not a date, withdrawal without its reason",
        "POST",
        lambda p, ids: f"/participants/{ids['undisposed']}/disposition",
        lambda p: {"status": "withdrew", "date": "yesterday"},
        "date",
        "reason",
    ),
    Case(
        "disposition correction: no reason, date in the future",
        "PATCH",
        record_path("dispositions", "disposition"),
        lambda p: {"date": iso(FUTURE), "disposition_reason": "moved abroad"},
        "reason",
        "date",
    ),
    Case(
        "disposition correction: bad date, its own reason removed",
        "PATCH",
        record_path("dispositions", "disposition"),
        lambda p: {"date": "soon", "disposition_reason": None, "reason": "source checked"},
        "date",
        "disposition_reason",
    ),
    Case(
        "deviation: unknown category, date in the future",
        "POST",
        participant_path("deviations"),
        lambda p: {"category": "minor", "description": "Late", "date": iso(FUTURE)},
        "category",
        "date",
    ),
    Case(
        "deviation correction: empty description, date in the future",
        "PATCH",
        record_path("deviations", "deviation"),
        lambda p: {"description": "", "date": iso(FUTURE), "reason": "typo"},
        "description",
        "date",
    ),
    Case(
        "query: blank text, unknown record type",
        "POST",
        lambda p, ids: "/queries",
        lambda p: {"entity": "spaceship", "record_id": p.pid, "text": "   "},
        "text",
        "entity",
        role="monitor",
    ),
    Case(
        "query: text missing, a field the record does not have",
        "POST",
        lambda p, ids: "/queries",
        lambda p: {"entity": "participant", "record_id": p.pid, "field": "colour"},
        "text",
        "field",
        role="monitor",
    ),
]


def send(trial: Trial, case: Case, p: Enrolled, ids: dict):
    return trial.request(case.method, case.path(p, ids), case.body(p), role=case.role)


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_a_body_with_a_schema_error_and_a_rule_error_names_both(trial, setup, case):
    p, ids = setup
    before = counts()
    response = send(trial, case, p, ids)
    assert response.status_code == 422, response.json
    errors = response.json["errors"]
    assert {case.schema_field, case.rule_field} <= set(errors), errors
    assert response.json["message"] == "Invalid input: " + ", ".join(sorted(errors)) + "."
    assert counts() == before


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_control_without_the_mechanism_only_the_schema_error_is_named(
    trial, setup, case, monkeypatch
):
    """Negative control: with no rule check found (the old behaviour) each body of the matrix
    names its schema field only, so the test above fails on the old code."""
    p, ids = setup
    monkeypatch.setattr(validation, "rule_check_for", lambda schema: None)
    response = send(trial, case, p, ids)
    assert response.status_code == 422, response.json
    assert case.schema_field in response.json["errors"]
    assert case.rule_field not in response.json["errors"]


def test_each_rule_error_alone_is_still_refused_by_the_service(trial, setup):
    """The rule half of each case, with the schema error fixed, is refused on its own (so
    the rule that the one-round check found is the service's, enforced on a valid body)."""
    p, ids = setup
    fixes = {
        "sex": {"sex": "F"},
        "year_of_birth": {"year_of_birth": 1980},
        "grade": {"grade": 2},
        "relatedness": {"relatedness": "possible"},
        "outcome": {"outcome": "recovered"},
        "reason": {"reason": "source checked"},
        "missed_reason": {"missed_reason": "ill"},
        "ocds.item_1": {"ocds": ocds(1)},
        "vitals.heart_rate": {},
        "heart_rate": {"heart_rate": 70},
        "value": {"value": 1.5},
        "tablets_returned": {"tablets_returned": 0},
        "date": {"date": iso(today())},
        "category": {"category": "procedure"},
        "description": {"description": "Late"},
        "text": {"text": "Please check."},
    }
    failures = []
    for case in CASES:
        if case.schema_field not in fixes:
            continue
        body = {**case.body(p), **fixes[case.schema_field]}
        if case.schema_field == "vitals.heart_rate":
            body["vitals"] = {**body["vitals"], "heart_rate": 70}
        if case.schema_field == "sex" and "sex" not in body:
            body["sex"] = "F"
        response = trial.request(case.method, case.path(p, ids), body, role=case.role)
        errors = (response.json or {}).get("errors", {})
        if response.status_code != 422 or case.rule_field not in errors:
            failures.append(f"{case.label}: {response.status_code} {errors}")
    assert failures == []


def test_the_rule_has_one_home_for_both_rounds(trial, setup, monkeypatch):
    """The one-round check runs the service's own rule function, not a copy: replace the
    service's registration rules and both a valid body and a body with a schema error carry
    the replacement's message."""
    from trial.participants import services

    monkeypatch.setattr(
        services, "registration_errors", lambda *args: {"consent_date": ["replaced rule"]}
    )
    valid = {"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": iso(today())}
    for body in (valid, {**valid, "sex": "X"}):
        response = trial.post("/participants", body)
        assert response.status_code == 422
        assert response.json["errors"]["consent_date"] == ["replaced rule"]


def test_a_body_not_an_object_or_a_list_with_a_null_item_does_not_confuse_the_rules(trial, setup):
    """Rules run only on what loaded, with each item at its index: a null item (dropped by
    marshmallow, which would shift the indexes) leaves the list to its schema errors."""
    p, ids = setup
    path = f"/participants/{p.pid}/visits"
    future = {"date": iso(FUTURE), "standard_drinks": 1}
    response = trial.post(path, w2(p, drinking=[None, future], ocds={"x": 1}))
    assert response.status_code == 422
    errors = response.json["errors"]
    assert "drinking.0" in errors and not any(k.startswith("drinking.1") for k in errors)
    assert trial.post(path, [1, 2]).status_code == 422


@pytest.mark.parametrize("mechanism", ["on", "off (control)"])
def test_a_new_site_with_a_bad_code_and_an_unknown_time_zone_names_both(
    client, make_user, monkeypatch, mechanism
):
    from tests.conftest import bearer

    if mechanism != "on":
        monkeypatch.setattr(validation, "rule_check_for", lambda schema: None)
    admin = make_user("admin")[1]
    body = {"code": "s 9", "name": "Nowhere", "timezone": "Mars/Olympus_Mons"}
    response = client.post("/api/v1/sites", json=body, headers=bearer(admin))
    assert response.status_code == 422
    named = set(response.json["errors"])
    assert named == ({"code", "timezone"} if mechanism == "on" else {"code"})


@pytest.mark.parametrize("mechanism", ["on", "off (control)"])
def test_a_new_account_with_a_bad_name_and_sites_its_role_refuses_names_both(
    client, make_user, monkeypatch, mechanism
):
    from tests.conftest import bearer

    if mechanism != "on":
        monkeypatch.setattr(validation, "rule_check_for", lambda schema: None)
    admin = make_user("admin")[1]
    body = {"username": "x", "role": "statistician", "sites": ["S01"], "password": "short"}
    response = client.post("/api/v1/users", json=body, headers=bearer(admin))
    assert response.status_code == 422
    named = set(response.json["errors"])
    expected = {"username", "password", "site"}
    assert named == (expected if mechanism == "on" else expected - {"site"})
