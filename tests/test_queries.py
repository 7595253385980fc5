"""Data queries: the life cycle, who may do what where, refusals, ages and per-site counts.

Queries are raised here on participant records (entity "participant"); the record types that
other features register are checked for their field lists and 404s without creating records.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.audit.services import verify_chain
from trial.database import utcnow
from trial.extensions import db
from trial.queries.models import DataQuery, QueryMessage

BLINDED_ONLY = ("statistician", "unblinded_statistician", "dsmb", "admin")


@pytest.fixture
def people(make_site, make_user, make_participant):
    """Sites S01-S03, a participant at S01 and S02, and a token per role and site."""
    for code in ("S01", "S02", "S03"):
        make_site(code)
    tokens = {
        "monitor": make_user("monitor", sites=["S01"], username="monitor.s01")[1],
        "monitor@S02": make_user("monitor", sites=["S02"], username="monitor.s02")[1],
        "monitor@S01,S02": make_user("monitor", sites=["S01", "S02"])[1],
        "data_manager": make_user("data_manager", username="dm")[1],
        "coordinator": make_user("coordinator", sites=["S01"], username="coord.s01")[1],
        "investigator": make_user("investigator", sites=["S01"], username="inv.s01")[1],
        "coordinator@S02": make_user("coordinator", sites=["S02"], username="coord.s02")[1],
        "investigator@S02": make_user("investigator", sites=["S02"])[1],
    }
    for role in BLINDED_ONLY:
        tokens[role] = make_user(role)[1]
    tokens["p1"] = make_participant(site="S01")["participant_id"]
    tokens["p2"] = make_participant(site="S02")["participant_id"]
    return tokens


def post(client, token, url, body=None):
    return client.post(f"/api/v1{url}", headers=bearer(token), json=body)


def get(client, token, url):
    return client.get(f"/api/v1{url}", headers=bearer(token))


def raise_query(client, token, record_id, text="Please check this value.", **extra):
    body = {"entity": "participant", "record_id": record_id, "text": text, **extra}
    return post(client, token, "/queries", body)


def raised(client, people, site="S01", **extra) -> int:
    record = people["p1"] if site == "S01" else people["p2"]
    response = raise_query(client, people["data_manager"], record, **extra)
    assert response.status_code == 201, response.json
    return response.json["query_id"]


def counts() -> tuple[int, int, int]:
    """(queries, messages, audit events): what a refused request must leave unchanged."""
    return tuple(
        db.session.scalar(select(func.count()).select_from(table))
        for table in (DataQuery, QueryMessage, AuditEvent)
    )


def query_events(query_id: int) -> list[AuditEvent]:
    db.session.expire_all()
    statement = (
        select(AuditEvent)
        .where(AuditEvent.entity_type == "query", AuditEvent.entity_id == str(query_id))
        .order_by(AuditEvent.seq)
    )
    return list(db.session.scalars(statement))


# --- life cycle -----------------------------------------------------------------------------


def test_full_life_cycle_with_thread_and_audit(client, people):
    p1 = people["p1"]
    created = raise_query(
        client, people["monitor"], p1, "Birth year differs from the source.", field="year_of_birth"
    )
    assert created.status_code == 201, created.json
    query = created.json
    qid = query["query_id"]
    assert {k: query[k] for k in ("entity", "record_id", "field", "participant_id", "site")} == {
        "entity": "participant",
        "record_id": p1,
        "field": "year_of_birth",
        "participant_id": p1,
        "site": "S01",
    }
    assert query["status"] == "open"
    assert query["opened_by"] == "monitor.s01"
    assert query["age_days"] == 0
    assert query["closed_at"] is None
    assert [m["kind"] for m in query["messages"]] == ["raise"]

    steps = [
        ("coordinator", "answer", {"text": "Corrected from the ID card: 1980."}, "answered"),
        ("monitor", "reopen", {"text": "The ID card says 1981."}, "open"),
        ("investigator", "answer", {"text": "  Checked again: 1980.  "}, "answered"),
        ("data_manager", "close", {"text": "Resolved."}, "closed"),
        ("monitor", "reopen", {"text": "Source document updated since."}, "open"),
        ("monitor", "close", None, "closed"),
    ]
    for who, action, body, status in steps:
        response = post(client, people[who], f"/queries/{qid}/{action}", body)
        assert response.status_code == 200, (action, response.json)
        assert response.json["status"] == status
        assert (response.json["closed_at"] is not None) == (status == "closed")

    detail = get(client, people["coordinator"], f"/queries/{qid}").json
    thread = [(m["kind"], m["by"], m["role"], m["text"]) for m in detail["messages"]]
    assert thread == [
        ("raise", "monitor.s01", "monitor", "Birth year differs from the source."),
        ("answer", "coord.s01", "coordinator", "Corrected from the ID card: 1980."),
        ("reopen", "monitor.s01", "monitor", "The ID card says 1981."),
        ("answer", "inv.s01", "investigator", "Checked again: 1980."),
        ("close", "dm", "data_manager", "Resolved."),
        ("reopen", "monitor.s01", "monitor", "Source document updated since."),
        ("close", "monitor.s01", "monitor", None),
    ]
    times = [m["at"] for m in detail["messages"]]
    assert times == sorted(times)

    events = query_events(qid)
    assert [(e.action, e.username, e.entity_site) for e in events] == [
        ("raise", "monitor.s01", "S01"),
        ("answer", "coord.s01", "S01"),
        ("reopen", "monitor.s01", "S01"),
        ("answer", "inv.s01", "S01"),
        ("close", "dm", "S01"),
        ("reopen", "monitor.s01", "S01"),
        ("close", "monitor.s01", "S01"),
    ]
    assert [None if e.new_value is None else json.loads(e.new_value) for e in events] == [
        t for *_, t in thread
    ]
    transitions = [
        (json.loads(e.detail)["status_from"], json.loads(e.detail)["status_to"]) for e in events
    ]
    assert transitions == [
        (None, "open"),
        ("open", "answered"),
        ("answered", "open"),
        ("open", "answered"),
        ("answered", "closed"),
        ("closed", "open"),
        ("open", "closed"),
    ]
    assert json.loads(events[0].detail) == {
        "entity": "participant",
        "record_id": p1,
        "field": "year_of_birth",
        "participant_id": p1,
        "status_from": None,
        "status_to": "open",
    }
    assert verify_chain().ok
    # Site staff read the same steps in the audit trail of their site.
    trail = get(client, people["coordinator"], f"/audit?entity_type=query&entity_id={qid}").json
    assert [e["action"] for e in trail] == [e.action for e in events]
    assert get(client, people["coordinator@S02"], "/audit?entity_type=query").json == []


def test_a_query_on_the_whole_record_and_an_open_query_may_be_withdrawn(client, people):
    response = raise_query(client, people["monitor"], people["p1"], "Consent form missing?")
    assert response.status_code == 201
    assert response.json["field"] is None
    closed = post(client, people["monitor"], f"/queries/{response.json['query_id']}/close", {})
    assert closed.status_code == 200
    assert closed.json["status"] == "closed"
    assert [m["kind"] for m in closed.json["messages"]] == ["raise", "close"]


@pytest.mark.parametrize("field", ["site", "sex", "year_of_birth", "consent_date"])
def test_every_participant_field_can_be_queried(client, people, field):
    response = raise_query(client, people["data_manager"], people["p2"], field=field)
    assert response.status_code == 201, response.json
    assert (response.json["field"], response.json["site"]) == (field, "S02")


# --- who may do what, where ------------------------------------------------------------------

ROUTES = [
    ("POST", "/queries", "raise"),
    ("GET", "/queries", None),
    ("GET", "/queries/summary", None),
    ("GET", "/queries/{id}", None),
    ("POST", "/queries/{id}/answer", {"text": "x"}),
    ("POST", "/queries/{id}/close", {"text": "x"}),
    ("POST", "/queries/{id}/reopen", {"text": "x"}),
]


@pytest.mark.parametrize("role", BLINDED_ONLY)
def test_blinded_only_roles_have_no_access(client, people, role):
    qid = raised(client, people)
    before = counts()
    for method, url, body in ROUTES:
        if body == "raise":
            body = {"entity": "participant", "record_id": people["p1"], "text": "x"}
        response = client.open(
            f"/api/v1{url.format(id=qid)}", method=method, headers=bearer(people[role]), json=body
        )
        assert response.status_code == 403, (role, method, url)
        assert response.json["message"] == f"The {role} role may not do this."
    assert counts() == before


@pytest.mark.parametrize(
    "who, action",
    [
        ("coordinator", "close"),
        ("investigator", "reopen"),
        ("monitor", "answer"),
        ("data_manager", "answer"),
    ],
)
def test_each_side_keeps_to_its_own_steps(client, people, who, action):
    qid = raised(client, people)
    before = counts()
    response = post(client, people[who], f"/queries/{qid}/{action}", {"text": "x"})
    assert response.status_code == 403
    assert counts() == before


@pytest.mark.parametrize("who", ["coordinator", "investigator"])
def test_site_staff_cannot_raise_queries(client, people, who):
    before = counts()
    assert raise_query(client, people[who], people["p1"]).status_code == 403
    assert counts() == before


def test_monitor_of_another_site_cannot_raise_on_the_record(client, people):
    before = counts()
    response = raise_query(client, people["monitor@S02"], people["p1"])
    assert response.status_code == 404
    assert response.json["message"] == f"No participant {people['p1']!r}."
    assert counts() == before
    # Its own site's record works, and a monitor of both sites may query either.
    assert raise_query(client, people["monitor@S02"], people["p2"]).status_code == 201
    assert raise_query(client, people["monitor@S01,S02"], people["p1"]).status_code == 201


@pytest.mark.parametrize(
    "who, method, action",
    [
        ("monitor@S02", "GET", ""),
        ("monitor@S02", "POST", "/close"),
        ("monitor@S02", "POST", "/reopen"),
        ("coordinator@S02", "GET", ""),
        ("coordinator@S02", "POST", "/answer"),
        ("investigator@S02", "POST", "/answer"),
    ],
)
def test_another_sites_query_is_a_404(client, people, who, method, action):
    qid = raised(client, people, site="S01")
    if action == "/reopen":
        post(client, people["monitor"], f"/queries/{qid}/close")
    before = counts()
    response = client.open(
        f"/api/v1/queries/{qid}{action}",
        method=method,
        headers=bearer(people[who]),
        json={"text": "x"} if method == "POST" else None,
    )
    assert response.status_code == 404, response.json
    assert response.json["message"] == f"No query '{qid}'."
    assert counts() == before
    # A query that does not exist at all answers exactly the same.
    missing = client.open(
        f"/api/v1/queries/{qid + 1000}{action}",
        method=method,
        headers=bearer(people[who]),
        json={"text": "x"} if method == "POST" else None,
    )
    assert missing.status_code == 404
    assert missing.json["message"] == f"No query '{qid + 1000}'."


@pytest.mark.parametrize("query_id", ["abc", "0", "-1", "1.5", "99999999999", "2147483648", "١"])
def test_malformed_or_out_of_range_query_ids_are_404(client, people, query_id):
    for method, action, who in [
        ("GET", "", "data_manager"),
        ("POST", "/answer", "coordinator"),
        ("POST", "/close", "data_manager"),
        ("POST", "/reopen", "monitor"),
    ]:
        response = client.open(
            f"/api/v1/queries/{query_id}{action}",
            method=method,
            headers=bearer(people[who]),
            json={"text": "x"} if method == "POST" else None,
        )
        assert response.status_code == 404, (query_id, action, response.json)


def test_listing_is_scoped_to_the_callers_sites(client, people):
    q1 = raised(client, people, site="S01")
    q2 = raised(client, people, site="S02")

    def ids(who, query=""):
        response = get(client, people[who], f"/queries{query}")
        assert response.status_code == 200, response.json
        return [q["query_id"] for q in response.json]

    assert ids("data_manager") == [q1, q2]
    assert ids("monitor") == [q1]
    assert ids("monitor@S02") == [q2]
    assert ids("monitor@S01,S02") == [q1, q2]
    assert ids("coordinator") == [q1]
    assert ids("investigator@S02") == [q2]
    # Asking for another site's queries by filter finds nothing rather than leaking them.
    assert ids("coordinator", "?site=S02") == []
    assert ids("coordinator", f"?participant_id={people['p2']}") == []


# --- refusals -------------------------------------------------------------------------------


def test_illegal_transitions_are_409_and_change_nothing(client, people):
    qid = raised(client, people)

    def refused(who, action, body, fragment):
        before = counts()
        response = post(client, people[who], f"/queries/{qid}/{action}", body)
        assert response.status_code == 409, response.json
        assert response.json["code"] == "conflict"
        assert fragment in response.json["message"]
        assert counts() == before

    refused("monitor", "reopen", {"text": "again"}, "is still open")
    assert (
        post(client, people["coordinator"], f"/queries/{qid}/answer", {"text": "a"}).status_code
        == 200
    )
    refused("investigator", "answer", {"text": "b"}, "is already answered")
    assert post(client, people["monitor"], f"/queries/{qid}/close").status_code == 200
    refused("coordinator", "answer", {"text": "c"}, "is closed")
    refused("data_manager", "close", {}, "is already closed")
    assert get(client, people["monitor"], f"/queries/{qid}").json["status"] == "closed"


@pytest.mark.parametrize(
    "body, fields",
    [
        ({}, {"entity", "record_id", "text"}),
        ({"entity": "participant", "record_id": "S01-0001"}, {"text"}),
        ({"entity": "participant", "record_id": "S01-0001", "text": "   "}, {"text"}),
        ({"entity": "participant", "record_id": "S01-0001", "text": ""}, {"text"}),
        ({"entity": "participant", "record_id": "S01-0001", "text": "x" * 4001}, {"text"}),
        ({"entity": "participant", "record_id": "S01-0001", "text": 5}, {"text"}),
        ({"entity": "", "record_id": "", "text": "x"}, {"entity", "record_id"}),
        ({"entity": "participant", "record_id": 1, "text": "x"}, {"record_id"}),
        ({"entity": "arm", "record_id": "S01-0001", "text": "x"}, {"entity"}),
        (
            {"entity": "participant", "record_id": "S01-0001", "text": "x", "field": "status"},
            {"field"},
        ),
        (
            {"entity": "participant", "record_id": "S01-0001", "text": "x", "field": "arm"},
            {"field"},
        ),
        ({"entity": "participant", "record_id": "S01-0001", "text": "x", "field": None}, {"field"}),
        (
            {"entity": "participant", "record_id": "S01-0001", "text": "x", "status": "closed"},
            {"status"},
        ),
    ],
)
def test_invalid_raise_is_422_naming_each_field_and_writes_nothing(client, people, body, fields):
    assert people["p1"] == "S01-0001"
    before = counts()
    response = post(client, people["monitor"], "/queries", body)
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    assert set(response.json["errors"]) == fields
    assert counts() == before


def test_unknown_field_message_lists_the_fields_that_can_be_queried(client, people):
    response = raise_query(client, people["monitor"], people["p1"], field="weight")
    message = response.json["errors"]["field"][0]
    assert "no field 'weight'" in message
    for name in ("site", "sex", "year_of_birth", "consent_date"):
        assert name in message
    unknown = post(
        client,
        people["monitor"],
        "/queries",
        {"entity": "nonsense", "record_id": people["p1"], "text": "x"},
    )
    assert "participant" in unknown.json["errors"]["entity"][0]


def test_field_is_checked_before_the_record_is_looked_up(client, people):
    """A bad field is a 422 even for a record the caller cannot see: it says nothing of it."""
    response = raise_query(client, people["monitor@S02"], people["p1"], field="arm")
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"field"}


@pytest.mark.parametrize(
    "action, who, body, fields",
    [
        ("answer", "coordinator", {}, {"text"}),
        ("answer", "coordinator", {"text": " \t\n"}, {"text"}),
        ("answer", "coordinator", {"text": "ok", "extra": 1}, {"extra"}),
        ("reopen", "monitor", {}, {"text"}),
        ("reopen", "monitor", {"text": ""}, {"text"}),
        ("close", "monitor", {"text": "  "}, {"text"}),
        ("close", "monitor", {"text": None}, {"text"}),
        ("close", "monitor", {"status": "closed"}, {"status"}),
    ],
)
def test_invalid_step_is_422_and_writes_nothing(client, people, action, who, body, fields):
    qid = raised(client, people)
    if action == "reopen":
        assert post(client, people["monitor"], f"/queries/{qid}/close").status_code == 200
    before = counts()
    response = post(client, people[who], f"/queries/{qid}/{action}", body)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == fields
    assert counts() == before


def test_query_on_a_missing_participant_is_404(client, people):
    before = counts()
    response = raise_query(client, people["data_manager"], "S01-9999")
    assert response.status_code == 404
    assert counts() == before


# The captured record types the features register (``register_record_type``): every one must
# be queryable. Listed here, so a registration that goes missing fails instead of skipping.
RECORD_ENTITIES = {
    "visit",
    "drinking_day",
    "ocds",
    "ciwa",
    "vitals",
    "lab_result",
    "blinding_assessment",
    "adverse_event",
    "dosing",
    "disposition",
    "protocol_deviation",
    "eligibility_answer",
}


def check_every_record_type_is_queryable(client, people):
    from trial.records import registry

    registered = registry.RECORD_TYPES
    assert set(registered) == RECORD_ENTITIES, sorted(registered)
    for entity, model in registered.items():
        for field in model.AUDITED_FIELDS:
            body = {"entity": entity, "record_id": "2147483647", "text": "x", "field": field}
            assert post(client, people["data_manager"], "/queries", body).status_code == 404
        for record_id in ("abc", "99999999999", "-1"):
            body = {"entity": entity, "record_id": record_id, "text": "x"}
            assert post(client, people["data_manager"], "/queries", body).status_code == 404
        body = {"entity": entity, "record_id": "1", "text": "x", "field": "no_such_field"}
        response = post(client, people["data_manager"], "/queries", body)
        assert response.status_code == 422, (entity, response.json)
        assert set(response.json["errors"]) == {"field"}
    assert counts()[0] == 0


def test_every_registered_record_type_is_queryable_by_its_audited_fields(client, people):
    """Record types other features register: their fields are accepted, others refused, and a
    record that does not exist is a 404 (no record is created here)."""
    check_every_record_type_is_queryable(client, people)


def test_control_a_record_type_not_registered_fails_instead_of_skipping(
    client, people, monkeypatch
):
    """The registry emptied (as before any feature registered): the check fails, where it
    used to skip."""
    from trial.records import registry

    monkeypatch.setattr(registry, "RECORD_TYPES", {})
    with pytest.raises(AssertionError):
        check_every_record_type_is_queryable(client, people)


def test_a_captured_record_is_queried_like_a_participant(client, people):
    """A record type another feature registers (a protocol deviation, made through the shared
    record service): its audited fields can be queried, its site scopes it, its id is canonical."""
    from datetime import date

    from trial.auth.models import User
    from trial.participants.models import Participant
    from trial.records.registry import RECORD_TYPES
    from trial.records.services import create_record

    model = RECORD_TYPES["protocol_deviation"]  # a KeyError, not a skip, if unregistered
    participant = db.session.scalar(
        select(Participant).where(Participant.participant_id == people["p1"])
    )
    author = db.session.scalar(select(User).where(User.username == "coord.s01"))
    values = {"category": "other", "description": "Visit done by phone.", "date": date(2026, 2, 1)}
    record = create_record(author, model, participant, values)
    db.session.commit()
    record_id = str(record.id)

    body = {"entity": "protocol_deviation", "record_id": f"00{record_id}", "text": "Why?"}
    assert post(client, people["monitor@S02"], "/queries", body).status_code == 404
    response = post(client, people["monitor"], "/queries", {**body, "field": "description"})
    assert response.status_code == 201, response.json
    assert (response.json["record_id"], response.json["site"]) == (record_id, "S01")
    assert response.json["participant_id"] == people["p1"]
    wrong = post(client, people["monitor"], "/queries", {**body, "field": "sex"})
    assert wrong.status_code == 422
    assert "description" in wrong.json["errors"]["field"][0]
    listing = get(client, people["coordinator"], "/queries?entity=protocol_deviation").json
    assert [q["query_id"] for q in listing] == [response.json["query_id"]]


# --- listing, ages and the summary ------------------------------------------------------------


def age(query_id: int, days: float, closed_after: float | None = None) -> None:
    """Move a query's opening (and closing) into the past."""
    now = utcnow()
    values = {"opened_at": now - timedelta(days=days)}
    if closed_after is not None:
        values["closed_at"] = values["opened_at"] + timedelta(days=closed_after)
    db.session.execute(update(DataQuery).where(DataQuery.id == query_id).values(**values))
    db.session.commit()


def test_listing_shows_age_in_days_and_filters(client, people):
    old = raised(client, people, site="S01")  # 10.5 days old, open
    mid = raised(client, people, site="S01", field="sex")  # 3 days old, answered
    closed = raised(client, people, site="S02")  # opened 20 days ago, closed after 4.9
    new = raised(client, people, site="S02")  # today
    assert (
        post(client, people["coordinator"], f"/queries/{mid}/answer", {"text": "F"}).status_code
        == 200
    )
    assert post(client, people["data_manager"], f"/queries/{closed}/close").status_code == 200
    age(old, 10.5)
    age(mid, 3.01)
    age(closed, 20, closed_after=4.9)

    listing = get(client, people["data_manager"], "/queries").json
    assert [(q["query_id"], q["age_days"], q["status"]) for q in listing] == [
        (closed, 4, "closed"),
        (old, 10, "open"),
        (mid, 3, "answered"),
        (new, 0, "open"),
    ]
    assert "messages" not in listing[0]

    def ids(query):
        response = get(client, people["data_manager"], f"/queries{query}")
        assert response.status_code == 200, response.json
        return [q["query_id"] for q in response.json]

    assert ids("?status=open") == [old, new]
    assert ids("?status=answered") == [mid]
    assert ids("?site=S02") == [closed, new]
    assert ids("?site=S02&status=open") == [new]
    assert ids(f"?participant_id={people['p1']}") == [old, mid]
    assert ids("?entity=participant") == [closed, old, mid, new]
    assert ids("?entity=visit") == []
    assert ids("?site=S09") == []
    bad = get(client, people["data_manager"], "/queries?status=pending")
    assert bad.status_code == 422
    assert set(bad.json["errors"]) == {"status"}


def test_summary_counts_open_queries_per_site_with_the_oldest_age(client, people):
    s01 = [raised(client, people, site="S01") for _ in range(3)]
    s02 = [raised(client, people, site="S02") for _ in range(2)]
    age(s01[0], 12.2)  # open, the oldest at S01
    age(s01[1], 30)  # answered: not open
    assert (
        post(client, people["coordinator"], f"/queries/{s01[1]}/answer", {"text": "a"}).status_code
        == 200
    )
    age(s01[2], 5)
    assert post(client, people["monitor@S02"], f"/queries/{s02[0]}/close").status_code == 200
    age(s02[0], 40, closed_after=1)  # closed: not counted
    age(s02[1], 0.5)

    summary = get(client, people["data_manager"], "/queries/summary")
    assert summary.status_code == 200
    assert summary.json == [
        {"site": "S01", "open": 2, "oldest_open_age_days": 12, "answered": 1},
        {"site": "S02", "open": 1, "oldest_open_age_days": 0, "answered": 0},
        {"site": "S03", "open": 0, "oldest_open_age_days": None, "answered": 0},
    ]
    # The same numbers, counted independently from the listing.
    listing = get(client, people["data_manager"], "/queries?status=open").json
    for row in summary.json:
        ages = [q["age_days"] for q in listing if q["site"] == row["site"]]
        assert row["open"] == len(ages)
        assert row["oldest_open_age_days"] == (max(ages) if ages else None)

    def sites(who):
        return [row["site"] for row in get(client, people[who], "/queries/summary").json]

    assert sites("monitor@S01,S02") == ["S01", "S02"]
    assert sites("monitor@S02") == ["S02"]
    assert sites("coordinator") == ["S01"]
    # A re-opened query counts as open again, still aged from when it was first raised.
    assert (
        post(client, people["monitor"], f"/queries/{s01[1]}/reopen", {"text": "no"}).status_code
        == 200
    )
    row = get(client, people["coordinator"], "/queries/summary").json[0]
    assert row == {"site": "S01", "open": 3, "oldest_open_age_days": 30, "answered": 0}


# --- the database keeps the invariants too ---------------------------------------------------


def _insert_query(**overrides) -> None:
    from trial.auth.models import User
    from trial.participants.models import Participant

    participant = db.session.scalars(select(Participant)).first()
    user = db.session.scalars(select(User)).first()
    now = utcnow()
    values = dict(
        entity="participant",
        record_id=participant.participant_id,
        participant_id=participant.id,
        site_id=participant.site_id,
        text="x",
        status="open",
        opened_at=now,
        opened_by_id=user.id,
        updated_at=now,
    )
    values.update(overrides)
    db.session.add(DataQuery(**values))
    db.session.flush()


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": "pending"},
        {"status": "closed"},  # closed without who and when
        {"closed_by_id": 1},  # open but marked closed by someone
        {"text": ""},
        {"participant_id": 999999},
        {"site_id": 999999},
        {"opened_by_id": 999999},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_database_refuses_an_inconsistent_query(client, people, overrides):
    with pytest.raises(IntegrityError):
        _insert_query(**overrides)
    db.session.rollback()
    _insert_query()  # the control: the same row without the override is accepted
    db.session.rollback()


@pytest.mark.parametrize(
    "kind, message_text, ok",
    [
        ("raise", "x", True),
        ("close", None, True),
        ("edit", "x", False),
        ("answer", None, False),
        ("reopen", "", False),
    ],
)
def test_database_refuses_unknown_message_kinds_and_silent_messages(
    client, people, kind, message_text, ok
):
    qid = raised(client, people)
    from trial.auth.models import User

    user = db.session.scalars(select(User)).first()
    db.session.add(
        QueryMessage(query_id=qid, kind=kind, text=message_text, at=utcnow(), by_id=user.id)
    )
    if ok:
        db.session.flush()
    else:
        with pytest.raises(IntegrityError):
            db.session.flush()
    db.session.rollback()


def test_database_refuses_a_message_for_a_missing_query(client, people):
    from trial.auth.models import User

    user = db.session.scalars(select(User)).first()
    db.session.add(
        QueryMessage(query_id=424242, kind="raise", text="x", at=utcnow(), by_id=user.id)
    )
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE query_messages SET text = 'rewritten'",
        "DELETE FROM query_messages",
    ],
)
def test_the_thread_is_append_only_in_the_database(client, people, statement):
    qid = raised(client, people)
    with pytest.raises(DBAPIError, match="query_messages is append-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    thread = get(client, people["monitor"], f"/queries/{qid}").json["messages"]
    assert [m["text"] for m in thread] == ["Please check this value."]


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("who, action", [("coordinator", "answer"), ("data_manager", "close")])
def test_concurrent_steps_on_one_query_pass_the_state_check_once(
    database_url, tmp_path, client, people, who, action
):
    """Sixteen identical steps at once through four gunicorn workers: one wins, the rest 409."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.live_server import live_server

    qid = raised(client, people)
    token = people[who]
    db.session.remove()
    clients = 16
    barrier = threading.Barrier(clients)

    def step(index):
        barrier.wait(timeout=60)
        response = requests.post(
            f"{server.api}/queries/{qid}/{action}",
            json={"text": f"step {index}"},
            headers=bearer(token),
            timeout=120,
        )
        return response.status_code

    with live_server(database_url, tmp_path / "server", workers=4) as server:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            statuses = sorted(pool.map(step, range(clients)))
        log = server.log()
    assert statuses == [200] + [409] * (clients - 1), statuses
    assert "Traceback" not in log, log[-3000:]
    kinds = list(
        db.session.scalars(
            select(QueryMessage.kind).where(QueryMessage.query_id == qid).order_by(QueryMessage.id)
        )
    )
    assert kinds == ["raise", action]
    assert [e.action for e in query_events(qid)] == ["raise", action]
    assert verify_chain().ok
