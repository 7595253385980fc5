"""Edit checks: unusual values are saved, warned about and queried by the system, once.

Visits are recorded through the API (``tests.capture_helpers``); the checks are then run by
calling ``run_visit_checks`` / ``run_record_checks`` directly, as visit recording and
correction do. Each rule is shown firing just above its threshold and silent at it (the
negative control). The expected thresholds are written out here, not read from the product.
"""

from __future__ import annotations

import json
import tomllib
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.capture_helpers import Trial, calendar, lab, vitals
from trial.audit.models import AuditEvent
from trial.audit.services import verify_chain
from trial.auth.models import User
from trial.errors import ConfigurationError
from trial.extensions import db
from trial.forms.edit_checks.config import load_edit_checks
from trial.forms.edit_checks.run import run_record_checks, run_visit_checks
from trial.forms.models import CiwaAssessment, DrinkingDay, LabResult, OcdsAssessment, Vitals
from trial.participants.models import Participant
from trial.queries.models import DataQuery, QueryMessage
from trial.visits.models import Visit

D = timedelta(days=1)
BUILT_IN = load_edit_checks({})


@pytest.fixture
def trial(client, make_site, make_user, make_participant):
    return Trial(client, make_site, make_user, make_participant)


def creator(visit_id: int) -> User:
    """Who entered the visit (a coordinator of S01): the user whose entry is checked."""
    return db.session.get(User, db.session.get(Visit, visit_id).created_by_id)


def run(trial, visit_id: int, rules=BUILT_IN, *, record=None) -> list[dict]:
    """Run the checks on the entry of the visit's creator, and commit as a request would."""
    visit = db.session.get(Visit, visit_id)
    participant = db.session.get(Participant, visit.participant_id)
    actor = creator(visit_id)
    if record is None:
        warnings = run_visit_checks(actor, participant, visit, rules=rules)
    else:
        warnings = run_record_checks(actor, participant, record, rules=rules)
    db.session.commit()
    return warnings


def baseline(trial, enrolled, **forms) -> int:
    """Record the baseline visit (day 0) with ``forms``; return its id."""
    response = trial.visit(enrolled.pid, "baseline", enrolled.day0, **forms)
    assert response.status_code == 201, response.json
    return response.json["id"]


def full_calendar(enrolled, drinks=2.0) -> list[dict]:
    """The 14 days from screening to the day before day 0: the baseline calendar's period."""
    return calendar(enrolled.screening_date, enrolled.day0 - D, drinks)


def system_queries(visit_id: int | None = None, **where) -> list[DataQuery]:
    """System queries (on the records of one visit: the visit or its forms), oldest first."""
    db.session.expire_all()
    statement = select(DataQuery).where(DataQuery.origin == "system")
    for name, value in where.items():
        statement = statement.where(getattr(DataQuery, name) == value)
    queries = list(db.session.scalars(statement.order_by(DataQuery.id)).unique())
    if visit_id is None:
        return queries
    records = {("visit", str(visit_id))}
    for model in (DrinkingDay, LabResult, Vitals, OcdsAssessment, CiwaAssessment):
        ids = db.session.scalars(select(model.id).where(model.visit_id == visit_id))
        records |= {(model.ENTITY, str(i)) for i in ids}
    return [q for q in queries if (q.entity, q.record_id) in records]


def table_counts() -> tuple[int, int, int]:
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (DataQuery, QueryMessage, AuditEvent)
    )


# --- each rule fires just above its threshold and not at it ---------------------------------


def _calendar_case(enrolled, fires):
    days = full_calendar(enrolled)
    return {"drinking": days[1:] if fires else days}  # 13 of 14 days, or all 14


def _drinks_case(enrolled, fires):
    days = full_calendar(enrolled)
    days[5]["standard_drinks"] = 30.5 if fires else 30.0
    return {"drinking": days}


def _lab_case(test, uln, limit_times):
    def case(enrolled, fires):
        value = uln * limit_times + (0.5 if fires else 0)
        return {"labs": [lab(test, value, upper_limit_normal=uln)]}

    return case


# rule -> (body of the screening visit, the path the warning names, the record type queried)
SINGLE_VISIT_CASES = {
    "calendar_incomplete": (_calendar_case, "drinking", "visit", None),
    "drinks_per_day_high": (
        _drinks_case,
        "drinking.5.standard_drinks",
        "drinking_day",
        "standard_drinks",
    ),
    "alt_above_uln": (_lab_case("ALT", 40.0, 10), "labs.0.value", "lab_result", "value"),
    "ast_above_uln": (_lab_case("AST", 35.0, 10), "labs.0.value", "lab_result", "value"),
    "bilirubin_above_uln": (_lab_case("bilirubin", 21.0, 3), "labs.0.value", "lab_result", "value"),
}


@pytest.mark.parametrize("rule", sorted(SINGLE_VISIT_CASES))
@pytest.mark.parametrize("fires", [True, False], ids=["above", "at_threshold"])
def test_each_rule_fires_above_its_threshold_and_not_at_it(trial, rule, fires):
    case, path, entity, field = SINGLE_VISIT_CASES[rule]
    enrolled = trial.enrol()
    visit_id = baseline(trial, enrolled, **case(enrolled, fires))
    warnings = run(trial, visit_id)
    if not fires:
        assert warnings == []
        assert system_queries(visit_id) == []
        return
    [warning] = warnings
    assert {k: warning[k] for k in ("rule", "field")} == {"rule": rule, "field": path}
    [query] = system_queries(visit_id)
    assert warning["query_id"] == query.id
    assert (query.rule, query.entity, query.field, query.status) == (rule, entity, field, "open")
    assert query.text == warning["message"]
    assert query.opened_by_id == creator(visit_id).id
    assert query.participant_id == enrolled.id


def test_the_messages_name_the_values(trial):
    enrolled = trial.enrol()
    days = full_calendar(enrolled)[3:]
    days[0]["standard_drinks"] = 42
    visit_id = baseline(trial, enrolled, drinking=days, labs=[lab("ALT", 450.0, "U/L", 40.0)])
    by_rule = {w["rule"]: w for w in run(trial, visit_id)}
    first = enrolled.screening_date
    assert by_rule["calendar_incomplete"]["message"].startswith(
        f"The drinking calendar records 11 of the 14 days this visit must cover "
        f"({first} to {enrolled.day0 - D}); 14 are expected."
    )
    assert by_rule["drinks_per_day_high"]["message"].startswith(
        f"42 standard drinks on {first + 3 * D}: more than 30 in a day."
    )
    assert by_rule["alt_above_uln"]["message"].startswith(
        "ALT 450 U/L is 11.2 times the upper limit of normal (40 U/L): above 10 times."
    )
    assert {w["form"] for w in by_rule.values()} == {"drinking", "labs"}


def week(trial, enrolled, n: int, weight) -> int:
    """Record titration week ``n`` with a weight (None: vitals without one); return its id."""
    code, day = f"titration_w{n}", enrolled.day0 + 7 * n * D
    response = trial.visit(enrolled.pid, code, day, vitals=vitals(weight_kg=weight))
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.mark.parametrize(
    ("weight", "fires"),
    [(88.5, True), (88.0, False), (71.5, True), (72.0, False)],
    ids=["gain_above", "gain_at", "loss_above", "loss_at"],
)
def test_weight_change_since_the_previous_visit_with_a_weight(trial, weight, fires):
    enrolled = trial.enrol()
    baseline(trial, enrolled, vitals=vitals(weight_kg=80.0))
    visit_id = week(trial, enrolled, 1, weight)
    warnings = run(trial, visit_id)
    assert [w["rule"] for w in warnings] == (["weight_change"] if fires else [])
    if fires:
        assert warnings[0]["field"] == "vitals.weight_kg"
        assert "from 80 kg at the previous visit with a weight" in warnings[0]["message"]
        [query] = system_queries(visit_id)
        assert (query.entity, query.field) == ("vitals", "weight_kg")


def test_correcting_the_earlier_weight_rechecks_the_next_visit(trial):
    enrolled = trial.enrol()
    first = baseline(trial, enrolled, vitals=vitals(weight_kg=80.0))
    second = week(trial, enrolled, 1, 90.0)
    assert [w["rule"] for w in run(trial, second)] == ["weight_change"]

    vitals_id = db.session.get(Visit, first).vitals.id
    _correct(trial, f"/vitals/{vitals_id}", {"weight_kg": 85.0})
    assert run(trial, first, record=db.session.get(Vitals, vitals_id)) == []
    [query] = system_queries(second, rule="weight_change")
    assert query.status == "open" and query.messages[-1].kind == "note"
    assert query.checked_value == f"90 (previous 85 on {enrolled.day0})"


def test_weight_change_skips_a_visit_without_a_weight(trial):
    """The comparison is with the latest earlier visit that has a weight, not the latest."""
    enrolled = trial.enrol()
    baseline(trial, enrolled, vitals=vitals(weight_kg=80.0))
    assert run(trial, week(trial, enrolled, 1, None)) == []
    assert [w["rule"] for w in run(trial, week(trial, enrolled, 2, 90.0))] == ["weight_change"]


def test_a_visit_without_a_calendar_gets_no_calendar_warning(trial):
    """A missing form is not an incomplete one (the expected forms are listed elsewhere)."""
    enrolled = trial.enrol()
    visit_id = baseline(trial, enrolled, vitals=vitals())
    assert run(trial, visit_id) == []


def test_checking_a_visit_leaves_the_queries_of_the_participants_other_visits_alone(trial):
    """A visit's checks read its own records only: the open query on an earlier visit is
    neither noted "no longer read" nor otherwise touched when a later visit is checked."""
    enrolled = trial.enrol()
    labs = [lab("ALT", 500.0, upper_limit_normal=40.0)]
    first = baseline(trial, enrolled, labs=labs, vitals=vitals(weight_kg=80.0))
    assert [w["rule"] for w in run(trial, first)] == ["alt_above_uln"]
    [query] = system_queries(first)
    before = (query.status, query.checked_value, [m.kind for m in query.messages])
    assert before[0] == "open" and before[2] == ["raise"]
    second = week(trial, enrolled, 1, 80.0)
    assert run(trial, second) == []
    [query] = system_queries(first)
    assert (query.status, query.checked_value, [m.kind for m in query.messages]) == before


# --- once per rule, record and field ---------------------------------------------------------


def _unusual_visit(trial):
    enrolled = trial.enrol()
    days = full_calendar(enrolled)
    days[0]["standard_drinks"] = 45
    labs = [lab("ALT", 500.0, upper_limit_normal=40.0)]
    return enrolled, baseline(trial, enrolled, drinking=days, labs=labs)


def test_running_again_raises_nothing_twice(trial):
    enrolled, visit_id = _unusual_visit(trial)
    first = run(trial, visit_id)
    assert sorted(w["rule"] for w in first) == ["alt_above_uln", "drinks_per_day_high"]
    before = table_counts()
    again = run(trial, visit_id)
    assert again == first  # the same warnings, naming the same queries
    assert table_counts() == before  # no query, message or audit row added
    assert len(system_queries(visit_id)) == 2


def test_the_negative_control_a_new_record_is_queried_anew(trial):
    """What makes a query a duplicate is its record: the same value on another visit's
    record raises its own query (so the check above is not passing by raising nothing)."""
    _, first_visit = _unusual_visit(trial)
    _, second_visit = _unusual_visit(trial)
    run(trial, first_visit)
    run(trial, second_visit)
    [first] = system_queries(first_visit, rule="alt_above_uln")
    [second] = system_queries(second_visit, rule="alt_above_uln")
    assert first.id != second.id


def _correct(trial, path, body):
    response = trial.patch(path, {**body, "reason": "transcription error"})
    assert response.status_code == 200, response.json
    return response.json


def test_a_correction_is_noted_on_the_open_query_not_queried_again(trial):
    enrolled, visit_id = _unusual_visit(trial)
    run(trial, visit_id)
    [query] = system_queries(visit_id, rule="alt_above_uln")
    lab_id = int(query.record_id)

    _correct(trial, f"/labs/{lab_id}", {"value": 450.0})  # still above 10 x 40
    warnings = run(trial, visit_id, record=db.session.get(LabResult, lab_id))
    assert [w["query_id"] for w in warnings if w["rule"] == "alt_above_uln"] == [query.id]
    [query] = system_queries(visit_id, rule="alt_above_uln")
    assert query.status == "open" and query.checked_value.startswith("450 U/L")
    assert [m.kind for m in query.messages] == ["raise", "note"]
    assert query.messages[1].text.startswith("Corrected to 450 U/L")

    _correct(trial, f"/labs/{lab_id}", {"value": 80.0})  # back in range
    warnings = run(trial, visit_id, record=db.session.get(LabResult, lab_id))
    assert [w["rule"] for w in warnings] == ["drinks_per_day_high"]
    [query] = system_queries(visit_id, rule="alt_above_uln")
    assert query.status == "open"  # settling it stays the monitor's call
    assert [m.kind for m in query.messages] == ["raise", "note", "note"]
    assert "which this check accepts; a monitor may close this query" in query.messages[2].text
    assert all(m.automatic for m in query.messages)
    assert {m.by_id for m in query.messages} == {creator(visit_id).id}  # whose entries

    before = table_counts()
    run(trial, visit_id, record=db.session.get(LabResult, lab_id))
    assert table_counts() == before  # a note is written once per change
    assert len(system_queries(visit_id)) == 2

    notes = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "query",
            AuditEvent.entity_id == str(query.id),
            AuditEvent.action == "note",
        )
    ).all()
    assert [json.loads(e.detail)["value_to"] for e in notes] == [
        "450 U/L (upper limit 40)",
        "80 U/L (upper limit 40)",
    ]


def test_a_value_a_monitor_accepted_is_not_queried_again_but_a_new_value_is(trial):
    enrolled, visit_id = _unusual_visit(trial)
    run(trial, visit_id)
    [query] = system_queries(visit_id, rule="drinks_per_day_high")
    closed = trial.post(
        f"/queries/{query.id}/close", {"text": "Confirmed with the source."}, role="monitor"
    )
    assert closed.status_code == 200, closed.json
    again = [w for w in run(trial, visit_id) if w["rule"] == "drinks_per_day_high"]
    assert [w["query_id"] for w in again] == [query.id]  # the warning names the closed query
    assert len(system_queries(visit_id, rule="drinks_per_day_high")) == 1

    _correct(trial, f"/drinking-days/{query.record_id}", {"standard_drinks": 50})
    run(trial, visit_id, record=db.session.get(DrinkingDay, int(query.record_id)))
    queries = system_queries(visit_id, rule="drinks_per_day_high")
    assert [q.status for q in queries] == ["closed", "open"]
    assert queries[1].checked_value == "50"


def test_a_calendar_completed_later_is_noted(trial):
    enrolled = trial.enrol()
    days = full_calendar(enrolled)
    visit_id = baseline(trial, enrolled, drinking=days[:8])
    [warning] = run(trial, visit_id)
    assert warning["rule"] == "calendar_incomplete"
    # The missing days are added to the visit through the records service (no route adds
    # days to a recorded visit yet).
    from trial.records.services import create_record

    participant = db.session.get(Participant, enrolled.id)
    for entry in days[8:]:
        create_record(
            creator(visit_id),
            DrinkingDay,
            participant,
            {"visit_id": visit_id, "day": date.fromisoformat(entry["date"]), "standard_drinks": 1},
        )
    db.session.commit()
    assert run(trial, visit_id) == []
    [query] = system_queries(visit_id)
    assert query.checked_value == "14 of 14 days"
    assert query.messages[-1].kind == "note"


# --- a system query is a query: the site answers, a monitor closes --------------------------


def test_a_system_query_is_answered_by_the_site_and_closed_by_a_monitor(trial):
    enrolled, visit_id = _unusual_visit(trial)
    run(trial, visit_id)
    [query] = system_queries(visit_id, rule="alt_above_uln")
    ids = {q.id for q in system_queries(visit_id)}

    listed = trial.get(f"/queries?origin=system&participant_id={enrolled.pid}")
    assert listed.status_code == 200
    assert {(q["origin"], q["rule"]) for q in listed.json if q["query_id"] in ids} == {
        ("system", "alt_above_uln"),
        ("system", "drinks_per_day_high"),
    }
    assert trial.get(f"/queries?origin=manual&participant_id={enrolled.pid}").json == []
    shown = trial.get(f"/queries/{query.id}", role="monitor").json
    assert shown["opened_by"] == creator(visit_id).username
    assert shown["messages"][0]["automatic"] is True

    refused = trial.post(f"/queries/{query.id}/close", {"text": "x"})  # a coordinator
    assert refused.status_code == 403
    answered = trial.post(f"/queries/{query.id}/answer", {"text": "Checked: ALT was 500."})
    assert answered.status_code == 200, answered.json
    assert answered.json["status"] == "answered"
    assert answered.json["messages"][1]["automatic"] is False
    closed = trial.post(f"/queries/{query.id}/close", {"text": "Accepted."}, role="monitor")
    assert closed.status_code == 200, closed.json
    assert closed.json["status"] == "closed"
    assert trial.get(f"/queries/{query.id}", site="S02", role="monitor").status_code == 404

    raise_row = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "query",
            AuditEvent.entity_id == str(query.id),
            AuditEvent.action == "raise",
        )
    ).one()
    detail = json.loads(raise_row.detail)
    assert raise_row.user_id == creator(visit_id).id  # whose entry fired the check
    assert (detail["origin"], detail["rule"]) == ("system", "alt_above_uln")
    assert verify_chain().ok


def test_manual_queries_say_they_are_manual(trial):
    enrolled = trial.enrol()
    body = {"entity": "participant", "record_id": enrolled.pid, "text": "Check the birth year."}
    raised = trial.post("/queries", body, role="monitor")
    assert raised.status_code == 201, raised.json
    assert (raised.json["origin"], raised.json["rule"]) == ("manual", None)
    assert raised.json["messages"][0]["automatic"] is False


@pytest.mark.parametrize(
    ("origin", "rule", "kind", "automatic"),
    [
        ("system", None, "raise", True),
        ("manual", "x", "raise", False),
        ("manual", None, "note", False),
    ],
    ids=["system_without_rule", "manual_with_rule", "note_by_a_person"],
)
def test_the_database_refuses_an_incoherent_query(trial, origin, rule, kind, automatic):
    enrolled, visit_id = _unusual_visit(trial)
    run(trial, visit_id)
    [query] = system_queries(visit_id, rule="alt_above_uln")
    if kind == "note":
        db.session.add(
            QueryMessage(
                query_id=query.id,
                kind=kind,
                text="x",
                at=query.opened_at,
                by_id=query.opened_by_id,
                automatic=automatic,
            )
        )
    else:
        query.origin, query.rule = origin, rule
    with pytest.raises((IntegrityError, DBAPIError)):
        db.session.flush()
    db.session.rollback()


# --- the protocol extends and changes the rules ----------------------------------------------


def test_the_protocol_changes_a_threshold_switches_a_rule_off_and_adds_one(trial):
    rules = load_edit_checks(
        {
            "edit_checks": [
                {"id": "drinks_per_day_high", "threshold": 40},
                {"id": "alt_above_uln", "enabled": False},
                {
                    "id": "heart_rate_high",
                    "kind": "above",
                    "form": "vitals",
                    "field": "heart_rate",
                    "threshold": 110,
                    "message": "{subject} {value:g} {unit} is above {threshold:g} {unit}.",
                },
            ]
        }
    )
    enrolled = trial.enrol()
    days = full_calendar(enrolled)
    days[0]["standard_drinks"], days[1]["standard_drinks"] = 40, 40.5
    body = {
        "drinking": days,
        "labs": [lab("ALT", 500.0, upper_limit_normal=40.0)],
        "vitals": vitals(heart_rate=111),
    }
    visit_id = baseline(trial, enrolled, **body)
    warnings = run(trial, visit_id, rules)
    assert [(w["rule"], w["field"]) for w in warnings] == [
        ("drinks_per_day_high", "drinking.1.standard_drinks"),
        ("heart_rate_high", "vitals.heart_rate"),
    ]
    assert warnings[1]["message"] == "Heart rate 111 /min is above 110 /min."
    # The control: the built-in rules fire on 40 drinks and on the ALT.
    enrolled = trial.enrol()
    visit_id = baseline(trial, enrolled, **body)
    assert sorted(w["rule"] for w in run(trial, visit_id)) == [
        "alt_above_uln",
        "drinks_per_day_high",
        "drinks_per_day_high",
    ]


def test_a_lowered_calendar_threshold(trial):
    rules = load_edit_checks({"edit_checks": [{"id": "calendar_incomplete", "threshold": 0.5}]})
    for recorded, fires in ((6, True), (7, False)):  # half of 14 is 7
        enrolled = trial.enrol()
        visit_id = baseline(trial, enrolled, drinking=full_calendar(enrolled)[:recorded])
        assert [w["rule"] for w in run(trial, visit_id, rules)] == (
            ["calendar_incomplete"] if fires else []
        )


def test_bad_settings_are_all_named_at_once():
    entries = [
        {"id": "drinks_per_day_high", "threshold": "many"},
        {"id": "alt_above_uln", "kind": "above"},
        {
            "id": "ggt_high",
            "kind": "above_uln",
            "form": "labs",
            "field": "value",
            "test": "GGT",
            "threshold": 20,
            "message": "{test} is {nope}",
        },
        {
            "id": "pulse",
            "kind": "below",
            "form": "vitals",
            "field": "pulse",
            "threshold": 0,
            "message": "low",
        },
        {
            "id": "lab",
            "kind": "above",
            "form": "labs",
            "field": "value",
            "threshold": 1,
            "message": "x",
        },
        {"id": "short", "threshold": 1},
        {"id": "calendar_incomplete", "threshold": 1.5},
        {"id": "weight_change", "colour": "red"},
    ]
    with pytest.raises(ConfigurationError) as caught:
        load_edit_checks({"edit_checks": entries})
    text = str(caught.value)
    for expected in (
        "edit_checks.0.threshold: Not a valid number.",
        "edit_checks.1.kind: built-in rule 'alt_above_uln' has a fixed condition",
        "edit_checks.2.message: unknown placeholder 'nope'",
        "edit_checks.3.field: a vitals rule reads one of systolic_bp",
        "edit_checks.3.threshold: a rule of kind below needs a threshold > 0",
        "edit_checks.4.test: a labs rule names its test",
        "edit_checks.5.kind: a new rule needs kind",
        "edit_checks.6.threshold: a rule of kind calendar_coverage needs a threshold > 0 and <= 1",
        "edit_checks.7.colour: Unknown field.",
    ):
        assert expected in text, (expected, text)
    with pytest.raises(ConfigurationError, match="listed twice"):
        load_edit_checks({"edit_checks": [{"id": "weight_change"}, {"id": "weight_change"}]})


def test_the_built_in_rules_and_the_forms_agree():
    """The vitals a rule may read are the vitals the forms capture (written in two places so
    the protocol loader need not import the models)."""
    from trial.forms.edit_checks.rules import FORM_FIELDS
    from trial.forms.models import VITALS_RANGES

    assert FORM_FIELDS["vitals"] == tuple(VITALS_RANGES)
    assert [rule.id for rule in BUILT_IN] == [
        "calendar_incomplete",
        "drinks_per_day_high",
        "alt_above_uln",
        "ast_above_uln",
        "bilirubin_above_uln",
        "weight_change",
    ]


def test_the_protocol_file_carries_the_rules(app, tmp_path):
    from trial.protocol import Protocol, current_protocol
    from trial.protocol.loader import load_protocol

    if "edit_checks" not in Protocol.__dataclass_fields__:
        pytest.skip("trial.protocol does not load [[edit_checks]] yet (the lead's wiring)")
    text = Path(app.config["PROTOCOL_FILE"]).read_text(encoding="utf-8")
    assert current_protocol().edit_checks == load_edit_checks(tomllib.loads(text))
    path = tmp_path / "protocol.toml"
    added = (
        '\n[[edit_checks]]\nid = "test_heart_rate_high"\nkind = "above"\nform = "vitals"\n'
        'field = "heart_rate"\nmessage = "{subject} {value:g}"\nthreshold = '
    )
    path.write_text(text + added + "120\n")
    [rule] = [r for r in load_protocol(path).edit_checks if r.id == "test_heart_rate_high"]
    assert (rule.kind, rule.threshold) == ("above", 120)
    path.write_text(text + added + "-1\n")
    with pytest.raises(
        ConfigurationError, match=r"edit_checks\.\d+\.threshold: a rule of kind above needs"
    ):
        load_protocol(path)


# --- blinding -------------------------------------------------------------------------------


def test_warnings_and_queries_do_not_depend_on_arm(trial, make_user):
    """The same entries give the same warnings and query texts in both arms."""
    from randomization.outputs import arms_for_closed_report

    people = [trial.enrol() for _ in range(6)]
    arms = arms_for_closed_report(make_user("unblinded_statistician")[0])
    assert {arms[p.pid] for p in people} == {"baclofen", "placebo"}
    seen = {}
    for enrolled in people:
        days = full_calendar(enrolled)[3:]
        days[0]["standard_drinks"] = 35
        visit_id = baseline(trial, enrolled, drinking=days, labs=[lab("AST", 400.0, "U/L", 35.0)])
        warnings = run(trial, visit_id)
        shape = [(w["rule"], w["form"], w["field"]) for w in warnings]
        # Every participant here has the same dates (enrolled alike, relative to today).
        texts = sorted(q.text for q in system_queries(visit_id))
        seen.setdefault(arms[enrolled.pid], set()).add((tuple(shape), tuple(texts)))
    assert seen["baclofen"] == seen["placebo"] and len(seen["baclofen"]) == 1


# --- the migration keeps every existing query as a person's ---------------------------------

MINE, BEFORE = "0014", "0013"  # this change's migration and the one it follows
AT = "2026-01-02 03:04:05+00:00"
SEED = (
    "INSERT INTO sites (id, code, name, timezone, planned_enrollment, participant_counter,"
    f" created_at) VALUES (1, 'S01', 'Site 1', 'UTC', 10, 1, '{AT}')",
    "INSERT INTO users (id, username, role, is_active, created_at) VALUES"
    f" (1, 'monitor.s01', 'monitor', :yes, '{AT}'), (2, 'coord.s01', 'coordinator', :yes, '{AT}')",
    "INSERT INTO participants (id, participant_id, site_id, number, sex, year_of_birth,"
    " consent_date, status, created_at, created_by_id) VALUES"
    f" (1, 'S01-0001', 1, 1, 'F', 1980, '2026-01-01', 'screened', '{AT}', 2)",
    "INSERT INTO data_queries (id, entity, record_id, participant_id, site_id, text, status,"
    f" opened_at, opened_by_id, updated_at) VALUES (1, 'participant', 'S01-0001', 1, 1,"
    f" 'Check the birth year.', 'answered', '{AT}', 1, '{AT}')",
    "INSERT INTO query_messages (query_id, kind, text, at, by_id) VALUES"
    f" (1, 'raise', 'Check the birth year.', '{AT}', 1), (1, 'answer', 'Checked.', '{AT}', 2)",
)


@pytest.fixture
def database_before(backend, tmp_path):
    """An app on a database of its own, migrated up to the revision before ``MINE``."""
    from flask_migrate import upgrade

    from tests.conftest import create_pg_database, drop_pg_database, make_config
    from trial import create_app

    name = f"trial_m12_{tmp_path.name[-20:]}".lower().replace("-", "_")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.db'}"
    else:
        url = create_pg_database(name)
    application = create_app(make_config(url, tmp_path / "instance"))
    try:
        with application.app_context():
            upgrade(directory=application.config["MIGRATIONS_DIR"], revision=BEFORE)
            with db.engine.begin() as connection:
                for statement in SEED:
                    connection.execute(text(statement), {"yes": True})
            yield application
            db.session.remove()
            db.engine.dispose()
    finally:
        if backend != "sqlite":
            drop_pg_database(name)


def _rows(statement: str) -> list[tuple]:
    with db.engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(statement))]
        connection.rollback()
    return rows


def test_the_migration_keeps_existing_queries_and_refuses_to_drop_system_ones(
    database_before,
):
    from flask_migrate import downgrade, upgrade

    directory = database_before.config["MIGRATIONS_DIR"]
    upgrade(directory=directory, revision=MINE)
    assert _rows("SELECT origin, rule, checked_value FROM data_queries") == [("manual", None, None)]
    kinds = _rows("SELECT kind, automatic FROM query_messages ORDER BY id")
    assert [(kind, bool(automatic)) for kind, automatic in kinds] == [
        ("raise", False),
        ("answer", False),
    ]
    with pytest.raises((IntegrityError, DBAPIError)):  # the thread is still append-only
        with db.engine.begin() as connection:
            connection.execute(text("DELETE FROM query_messages"))
    with pytest.raises((IntegrityError, DBAPIError)):  # a system query names its rule
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE data_queries SET origin = 'system'"))

    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO data_queries (id, entity, record_id, participant_id, site_id, text,"
                " status, opened_at, opened_by_id, updated_at, origin, rule, checked_value)"
                " VALUES (2, 'participant', 'S01-0001', 1, 1, 'Unusual.', 'open', :at, 2, :at,"
                " 'system', 'weight_change', '90')"
            ),
            {"at": AT},
        )
    with pytest.raises(SystemExit):  # flask-migrate's exit on the migration's RuntimeError
        downgrade(directory=directory, revision=BEFORE)
    assert _rows("SELECT version_num FROM alembic_version") == [(MINE,)]
    assert _rows("SELECT id, origin FROM data_queries ORDER BY id") == [
        (1, "manual"),
        (2, "system"),
    ]

    with db.engine.begin() as connection:  # the control: without it the downgrade runs
        connection.execute(text("DELETE FROM data_queries WHERE id = 2"))
    downgrade(directory=directory, revision=BEFORE)
    assert _rows("SELECT version_num FROM alembic_version") == [(BEFORE,)]
    assert _rows("SELECT id, status FROM data_queries") == [(1, "answered")]
