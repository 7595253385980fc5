"""Site isolation over every endpoint whose path carries a participant or record id.

The endpoints come from ``app.url_map``, so a new one is in the matrix the day it is added;
a path argument of an unknown kind, or an endpoint with no request body here, fails the test
until it is covered. Staff of site S02 (coordinator, investigator, monitor) reading or
writing a record of site S01 get a 404 that reads like the 404 for a record that does not
exist, and nothing in the database changes (every table compared, the audit trail and the
records' versions included). Each request is then repeated by the same role at S01 as a
positive control: it passes, so the 404 came from the site check and not from the body.
Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from tests.capture_helpers import PASSWORD, Trial, calendar, ciwa, iso, lab, ocds, today, vitals
from tests.conftest import approve_for_code_break
from trial.auth.policy import is_page_endpoint, policy_for
from trial.database import reading
from trial.extensions import db
from trial.records.registry import RECORD_TYPES

D = timedelta(days=1)
ROLES = ("coordinator", "investigator", "monitor")  # the site-bound roles
# Path arguments that identify site data, and those that do not (with why).
SITE_DATA_ARGUMENTS = {"participant_id", "visit_id", "record_id", "query_id"}
OTHER_ARGUMENTS = {"username": "user accounts are managed by admins, not site data"}
ABSENT = {"participant_id": "S01-9999", "int": "999999", "query_id": "999999"}
# Control order: reads, then corrections, then the other writes, marks in error last.
WRITE_ORDER = (
    "visits.record_visit",
    "dosing.record_dosing",
    "conduct.record_disposition",
    "conduct.record_deviation",
    "conduct.answer_eligibility",
    "safety.report_adverse_event",
    "safety.code_adverse_event_term",
    "safety.submit_report",
    "safety.acknowledge_report",
    "randomization.randomize",
    "visits.sign_visit",
    "verification.verify_visit",
    "queries.answer_query",
    "queries.close_query",
    "queries.reopen_query",
    "randomization.break_code",
)


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def adverse_event(p) -> dict:
    return {
        "term": "Somnolence",
        "onset_date": iso(p.day0 + 2 * D),
        "end_date": iso(p.day0 + 4 * D),
        "grade": 1,
        "serious": False,
        "seriousness_criteria": [],
        "relatedness": "possible",
        "action_taken": "none",
        "outcome": "recovered",
    }


@pytest.fixture
def s01(app, trial):
    """A participant of S01 with a record of every registered type and an open query."""
    # Both investigators are approved to break codes: the S02 one is refused by site alone.
    for site in ("S01", "S02"):
        approve_for_code_break(trial.investigator_user[site], PASSWORD)
    p = trial.enrol(day0_ago=30, screening_drinking=True)
    baseline = trial.visit(
        p.pid,
        "baseline",
        p.day0,
        drinking=calendar(p.screening_date, p.day0 - D),
        ocds=ocds(2),
        ciwa=ciwa(1),
        vitals=vitals(),
        labs=[lab()],
        blinding=[{"respondent": "participant", "guess": "dont_know", "confidence": None}],
    ).json
    late = trial.visit(  # raises a deviation
        p.pid, "titration_w1", p.day0 + 12 * D, out_of_window_reason="Travelling"
    ).json
    dosing = trial.post(
        f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3}
    ).json
    disposition = trial.post(
        f"/participants/{p.pid}/disposition", {"status": "completed", "date": iso(today())}
    ).json
    deviation = trial.get(f"/participants/{p.pid}/deviations").json[0]
    records = {
        "visit": baseline["id"],
        "drinking_day": baseline["drinking"][0]["id"],
        "ocds": baseline["ocds"]["id"],
        "ciwa": baseline["ciwa"]["id"],
        "vitals": baseline["vitals"]["id"],
        "lab_result": baseline["labs"][0]["id"],
        "blinding_assessment": baseline["blinding"][0]["id"],
        "dosing": dosing["id"],
        "disposition": disposition["id"],
        "protocol_deviation": deviation["id"],
        "eligibility_answer": trial.get(f"/participants/{p.pid}/eligibility").json["criteria"][0][
            "record_id"
        ],
    }
    if "safety.report_adverse_event" in app.view_functions:
        event = trial.post(f"/participants/{p.pid}/adverse-events", adverse_event(p))
        assert event.status_code == 201, event.json
        records["adverse_event"] = event.json["id"]
    if "safety.submit_report" in app.view_functions:
        serious = {
            **adverse_event(p),
            "serious": True,
            "seriousness_criteria": ["hospitalisation"],
            "grade": 3,
            "awareness_date": iso(p.day0 + 2 * D),
        }
        event = trial.post(f"/participants/{p.pid}/adverse-events", serious)
        assert event.status_code == 201, event.json
        (report,) = trial.get("/expedited-reports").json
        records["expedited_report"] = report["id"]
    query = trial.post(
        "/queries",
        {"entity": "visit", "record_id": str(late["id"]), "text": "Why late?"},
        role="monitor",
    )
    assert query.status_code == 201, query.json
    return {"p": p, "records": records, "query": query.json["query_id"], "late": late}


def snapshot() -> dict[str, list]:
    """Every row of every table, read through a connection of its own."""
    with reading(), db.engine.connect() as connection:
        names = sorted(n for n in inspect(connection).get_table_names() if n != "alembic_version")
        return {
            name: [
                tuple(row)
                for row in connection.execute(text(f"SELECT * FROM {name} ORDER BY 1")).all()
            ]
            for name in names
        }


# Routes whose record id is not named after its type by the endpoint's name.
ENDPOINT_ENTITIES = {
    "safety.code_adverse_event_term": "adverse_event",
    "safety.submit_report": "expedited_report",
    "safety.acknowledge_report": "expedited_report",
}


def entity_of(endpoint: str) -> str:
    """The record type an add_record_endpoints route serves: ``forms.correct_ocds`` -> ocds."""
    if endpoint in ENDPOINT_ENTITIES:
        return ENDPOINT_ENTITIES[endpoint]
    name = endpoint.split(".", 1)[1]
    for prefix in ("get_", "correct_", "mark_"):
        name = name.removeprefix(prefix)
    return name.removesuffix("_in_error")


def body_for(endpoint: str, method: str, s01) -> dict | None:
    p = s01["p"]
    if method == "GET":
        return None
    if method == "PATCH" or endpoint.endswith("_in_error"):
        return {"reason": "isolation probe"}
    return {
        "visits.record_visit": {"visit_code": "titration_w2", "visit_date": iso(p.day0 + 14 * D)},
        "dosing.record_dosing": {"date": iso(p.day0 + 2 * D), "tablets_per_day": 3},
        "conduct.record_disposition": {"status": "completed", "date": iso(today())},
        "conduct.answer_eligibility": {"answers": {"I1": True}},
        "conduct.record_deviation": {
            "category": "procedure",
            "description": "Isolation probe",
            "date": iso(today()),
        },
        "safety.report_adverse_event": adverse_event(p),
        "safety.code_adverse_event_term": {"preferred_term": "Fall", "reason": "probe"},
        "safety.submit_report": {},
        "safety.acknowledge_report": {},
        "randomization.randomize": {"eligibility_confirmed": True},
        "randomization.break_code": {"reason": "emergency", "password": PASSWORD},
        "visits.sign_visit": {"password": PASSWORD},
        "verification.verify_visit": {},
        "queries.answer_query": {"text": "Transport strike."},
        "queries.close_query": {"text": "Thanks."},
        "queries.reopen_query": {"text": "Please document."},
    }.get(endpoint, KeyError)


def targets(app, s01) -> tuple[list[dict], list[str]]:
    """Each (rule, method) with an S01 id in its path; and what cannot be covered."""
    out, uncovered = [], []
    for rule in app.url_map.iter_rules():
        if not rule.arguments or is_page_endpoint(app, rule.endpoint):
            continue  # pages: tests/browser/test_isolation_blinding.py and tests/test_pages_*
        unknown = rule.arguments - SITE_DATA_ARGUMENTS - set(OTHER_ARGUMENTS)
        if unknown:
            uncovered.append(f"{rule.rule}: path argument(s) {sorted(unknown)} not in the matrix")
            continue
        if not rule.arguments & SITE_DATA_ARGUMENTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            values, absent = {}, {}
            for argument in rule.arguments:
                if argument == "participant_id":
                    values[argument], absent[argument] = s01["p"].pid, ABSENT["participant_id"]
                elif argument == "visit_id":
                    values[argument], absent[argument] = s01["records"]["visit"], ABSENT["int"]
                elif argument == "query_id":
                    values[argument], absent[argument] = s01["query"], ABSENT["query_id"]
                else:
                    entity = entity_of(rule.endpoint)
                    if entity not in s01["records"]:
                        uncovered.append(
                            f"{method} {rule.rule}: no S01 {entity!r} record in the fixture"
                        )
                        break
                    values[argument], absent[argument] = s01["records"][entity], ABSENT["int"]
            else:
                body = body_for(rule.endpoint, method, s01)
                if body is KeyError:
                    uncovered.append(f"{method} {rule.rule}: no request body in the matrix")
                    continue
                out.append(
                    {
                        "endpoint": rule.endpoint,
                        "method": method,
                        "url": rule.rule.replace("<int:", "<"),
                        "values": values,
                        "absent": absent,
                        "body": body,
                    }
                )
    return out, uncovered


def url(target, values) -> str:
    path = target["url"]
    for name, value in values.items():
        path = path.replace(f"<{name}>", str(value))
    return path.removeprefix("/api/v1")


def control_rank(target) -> tuple:
    if target["method"] == "GET":
        return (0, target["url"])
    if target["method"] == "PATCH":
        return (1, target["url"])
    if target["endpoint"].endswith("_in_error"):
        return (3, target["url"])
    return (2, WRITE_ORDER.index(target["endpoint"]), target["url"])


def test_every_id_endpoint_is_in_the_matrix(app, trial, s01):
    found, uncovered = targets(app, s01)
    assert uncovered == []
    # Every registered record type has its three endpoints in the matrix.
    for entity in RECORD_TYPES:
        if entity == "visit":
            continue
        covered = {t["endpoint"].split(".", 1)[1] for t in found if "record_id" in t["values"]}
        assert {f"get_{entity}", f"correct_{entity}", f"mark_{entity}_in_error"} <= covered, entity
    assert len(found) >= 45


def test_another_sites_staff_get_404_and_change_nothing(app, trial, s01):
    found, uncovered = targets(app, s01)
    assert uncovered == []
    failures = []
    attempts = 0
    for target in found:
        policy = policy_for(app, target["endpoint"])
        for role in ROLES:
            before = snapshot()
            response = trial.request(
                target["method"],
                url(target, target["values"]),
                target["body"],
                site="S02",
                role=role,
            )
            attempts += 1
            expected = 404 if policy.permits(role) else 403
            where = f"{role} of S02: {target['method']} {url(target, target['values'])}"
            if response.status_code != expected:
                failures.append(f"{where}: {response.status_code}, expected {expected}")
            if snapshot() != before:
                failures.append(f"{where}: the database changed")
            if expected == 404 == response.status_code:
                # Indistinguishable from a record that does not exist.
                missing = trial.request(
                    target["method"],
                    url(target, target["absent"]),
                    target["body"],
                    site="S02",
                    role=role,
                )
                shown, absent = response.json, missing.json
                for name in target["values"]:
                    shown["message"] = shown["message"].replace(str(target["values"][name]), "#")
                    absent["message"] = absent["message"].replace(str(target["absent"][name]), "#")
                if (missing.status_code, absent) != (404, shown):
                    failures.append(f"{where}: 404 differs from a missing id: {shown} / {absent}")
    assert failures == []
    assert attempts == len(found) * len(ROLES)

    # Positive controls: the same requests by the same roles at S01 pass.
    controls = []
    for target in sorted(found, key=control_rank):
        policy = policy_for(app, target["endpoint"])
        role = next((r for r in ROLES if policy.permits(r)), None)
        if role is None:  # central roles only (coding): no site staff to isolate
            continue
        response = trial.request(
            target["method"], url(target, target["values"]), target["body"], site="S01", role=role
        )
        # The PATCH body changes nothing: once it has reached the record, it is refused as
        # such (422 no_change), as a second mark in error is (409).
        reached = isinstance(response.json, dict) and response.json.get("code") == "no_change"
        if not (200 <= response.status_code < 300 or response.status_code == 409 or reached):
            controls.append(
                f"{role} of S01: {target['method']} {url(target, target['values'])}: "
                f"{response.status_code} {response.json}"
            )
    assert controls == []


def test_queries_and_lists_stay_within_the_site(trial, s01):
    """Ids in bodies and filters: raising a query on an S01 record from S02, listing."""
    late = s01["late"]
    before = snapshot()
    raised = trial.post(
        "/queries",
        {"entity": "visit", "record_id": str(late["id"]), "text": "Peeking"},
        site="S02",
        role="monitor",
    )
    assert raised.status_code == 404, raised.json
    on_participant = trial.post(
        "/queries",
        {"entity": "participant", "record_id": s01["p"].pid, "text": "Peeking"},
        site="S02",
        role="monitor",
    )
    assert on_participant.status_code == 404, on_participant.json
    assert snapshot() == before
    for role in ROLES:
        listed = trial.get(f"/queries?participant_id={s01['p'].pid}", site="S02", role=role)
        assert listed.status_code in (200, 404) and (listed.json == [] or listed.status_code == 404)
        participants = trial.get("/participants", site="S02", role=role)
        assert participants.status_code == 200
        assert s01["p"].pid not in {row["participant_id"] for row in participants.json}
