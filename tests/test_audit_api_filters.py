"""GET /api/v1/audit: a participant's whole history, time ranges, newest first, cursor pages
(issue 23 §6), on both databases; and that none of it tells an admin an arm."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.capture_helpers import Trial, iso, ocds, vitals
from tests.conftest import bearer
from tests.test_adverse_events import serious
from trial.audit.models import AuditEvent
from trial.audit.reading import TRIAL_WIDE_ENTITIES, linked_entity_types
from trial.auth.models import User
from trial.extensions import db


@pytest.fixture
def trial(client, make_site, make_user, make_participant):
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def admin(make_user):
    return make_user("admin")[1]


def fetch(client, token, **params) -> list[dict]:
    """Every page of a query, following the cursor the answers give."""
    rows, cursor = [], None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/audit", headers=bearer(token), query_string=query)
        assert response.status_code == 200, response.json
        rows += response.json
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return rows
    raise AssertionError("paging never ended")


def history(trial: Trial, pid: str, day0, *, extra_dose: bool = False) -> dict[str, str]:
    """A visit with forms, dosing, a serious AE (its expedited report) and a data query under
    participant ``pid``; returns the record ids the answers gave, by entity type."""
    made = {}
    visit = trial.visit(pid, "titration_w1", day0 + timedelta(days=7), ocds=ocds(), vitals=vitals())
    assert visit.status_code == 201, visit.json
    made["visit"] = str(visit.json["id"])
    dose = trial.post(f"/participants/{pid}/dosing", {"date": iso(day0), "tablets_per_day": 3})
    assert dose.status_code == 201, dose.json
    made["dosing"] = str(dose.json["id"])
    if extra_dose:
        again = {"date": iso(day0 + timedelta(days=1)), "tablets_per_day": 3}
        assert trial.post(f"/participants/{pid}/dosing", again).status_code == 201
    ae = trial.post(f"/participants/{pid}/adverse-events", serious())
    assert ae.status_code == 201, ae.json
    made["adverse_event"] = str(ae.json["id"])
    query = trial.post(
        "/queries",
        {"entity": "visit", "record_id": made["visit"], "text": "Please check the date."},
        role="monitor",
    )
    assert query.status_code == 201, query.json
    made["query"] = str(query.json["query_id"])
    return made


def test_participant_filter_covers_every_record_under_it(client, trial, admin):
    first = trial.enrol(day0_ago=30)
    second = trial.enrol(day0_ago=30)
    made = history(trial, first.pid, first.day0)
    other = history(trial, second.pid, second.day0)
    rows = fetch(client, admin, participant=first.pid, limit=50)
    keys = {(r["entity_type"], r["entity_id"]) for r in rows}
    for entity, record_id in made.items():
        assert (entity, record_id) in keys, entity
        assert (entity, other[entity]) not in keys, entity  # the other participant's, not here
    assert ("participant", first.pid) in keys and ("participant", second.pid) not in keys
    found = {r["entity_type"] for r in rows}
    assert {"visit", "ocds", "vitals", "dosing", "adverse_event", "expedited_report", "query"} <= (
        found
    )
    # Negative control: the old way (the participant row's own events) misses most of it.
    own = fetch(client, admin, entity_type="participant", entity_id=first.pid, limit=1000)
    assert 0 < len(own) < len(rows) / 3
    # Every row of an entity under a participant is in exactly one participant's history.
    everyone = db.session.scalars(select(AuditEvent)).all()
    linked = {e.seq for e in everyone if e.entity_type in linked_entity_types()}
    histories = [
        {r["seq"] for r in fetch(client, admin, participant=pid, limit=1000)}
        for pid in (first.pid, second.pid)
    ]
    assert histories[0] | histories[1] == linked and not histories[0] & histories[1]
    # Combined with another filter, the participant filter narrows it.
    dosing = fetch(client, admin, participant=first.pid, entity_type="dosing")
    assert {r["entity_id"] for r in dosing} == {made["dosing"]}


def test_site_staff_read_only_their_sites_participants(client, trial, make_user):
    s01 = trial.enrol(site="S01", day0_ago=None)
    _, s02_coordinator = make_user("coordinator", sites=["S02"])
    _, s01_coordinator = make_user("coordinator", sites=["S01"])
    assert fetch(client, s01_coordinator, participant=s01.pid)
    other_site = client.get(
        "/api/v1/audit", headers=bearer(s02_coordinator), query_string={"participant": s01.pid}
    )
    missing = client.get(
        "/api/v1/audit", headers=bearer(s02_coordinator), query_string={"participant": "S02-0099"}
    )
    # Another site's participant is answered exactly as one that does not exist.
    assert other_site.status_code == missing.status_code == 422
    assert set(other_site.json["errors"]) == {"participant"}
    assert other_site.json["errors"]["participant"][0].replace(s01.pid, "X") == (
        missing.json["errors"]["participant"][0].replace("S02-0099", "X")
    )


def test_time_range_keeps_rows_from_inclusive_to_exclusive(client, trial, admin):
    for _ in range(3):
        trial.enrol(day0_ago=None)
    everything = fetch(client, admin, limit=1000)
    instants = sorted({r["occurred_at"] for r in everything})
    assert len(instants) >= 3
    start, end = instants[1], instants[-1]
    got = fetch(client, admin, **{"from": start, "to": end, "limit": 1000})
    expected = [r["seq"] for r in everything if start <= r["occurred_at"] < end]
    assert [r["seq"] for r in got] == expected and expected
    # The same instant in another offset, and a naive one taken as UTC, select the same rows.
    from datetime import datetime

    shifted = datetime.fromisoformat(start).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo
    )
    naive = datetime.fromisoformat(start).replace(tzinfo=None).isoformat()
    for value in (shifted.isoformat(), naive):
        same = fetch(client, admin, **{"from": value, "to": end, "limit": 1000})
        assert [r["seq"] for r in same] == expected
    # Control: a range that excludes everything returns nothing.
    assert fetch(client, admin, **{"from": "2000-01-01T00:00:00Z", "to": "2000-01-02"}) == []


@pytest.mark.parametrize(
    "query, fields",
    [
        ({"from": "yesterday"}, {"from"}),
        ({"from": "2026-13-01T00:00:00Z", "to": "soon"}, {"from", "to"}),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"to"}),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"to"}),
        ({"to": "9999-12-31T23:00:00-05:00"}, {"to"}),
        ({"from": "0001-01-01T00:00:00+05:00"}, {"from"}),
        ({"participant": "S01-0999", "from": "x", "limit": 0}, {"participant", "from", "limit"}),
        ({"cursor": "not-a-cursor"}, {"cursor"}),
        ({"cursor": base64.urlsafe_b64encode(b"newest:99999999999").decode()}, {"cursor"}),
        ({"order": "oldest"}, {"order"}),
        ({"order": "newest", "after_seq": 3}, {"after_seq"}),
    ],
)
def test_bad_filters_are_422_naming_each_field(client, trial, admin, query, fields):
    before = db.session.scalar(select(db.func.count()).select_from(AuditEvent))
    response = client.get("/api/v1/audit", headers=bearer(admin), query_string=query)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == fields
    assert db.session.scalar(select(db.func.count()).select_from(AuditEvent)) == before


def test_cursor_of_one_order_is_refused_in_the_other(client, trial, admin):
    for _ in range(2):
        trial.enrol(day0_ago=None)
    page = client.get(
        "/api/v1/audit", headers=bearer(admin), query_string={"order": "newest", "limit": 2}
    )
    cursor = page.headers["X-Next-Cursor"]
    assert 'rel="next"' in page.headers["Link"] and "cursor=" in page.headers["Link"]
    refused = client.get(
        "/api/v1/audit",
        headers=bearer(admin),
        query_string={"order": "chain", "cursor": cursor, "limit": 2},
    )
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"order"}
    ok = client.get("/api/v1/audit", headers=bearer(admin), query_string={"cursor": cursor})
    assert ok.status_code == 200 and ok.json[0]["seq"] < page.json[-1]["seq"]


@pytest.mark.parametrize("order", ["newest", "chain"])
def test_pages_hold_every_row_once_while_rows_are_added(client, trial, admin, order):
    p = trial.enrol(day0_ago=30)
    history(trial, p.pid, p.day0)
    before = [r["seq"] for r in fetch(client, admin, participant=p.pid, limit=1000)]
    assert len(before) > 30
    seen, cursor, added = [], None, 0
    while True:
        query = {"participant": p.pid, "order": order, "limit": 7}
        if cursor:
            query["cursor"] = cursor
        page = client.get("/api/v1/audit", headers=bearer(admin), query_string=query)
        assert page.status_code == 200 and len(page.json) <= 7
        seen += [r["seq"] for r in page.json]
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        # Between pages: more rows for this participant and for another one.
        day = p.day0 + timedelta(days=2 + added)
        dosed = trial.post(
            f"/participants/{p.pid}/dosing", {"date": iso(day), "tablets_per_day": 3}
        )
        assert dosed.status_code == 201, dosed.json
        trial.enrol(day0_ago=None)
        added += 1
    after = [r["seq"] for r in fetch(client, admin, participant=p.pid, limit=1000)]
    new = [seq for seq in after if seq not in before]
    assert added >= 4 and new
    if order == "newest":
        # Newest first: the rows there were, each once, in order; the new ones come later,
        # at the top of a new first page.
        assert seen == sorted(before, reverse=True)
        first = client.get(
            "/api/v1/audit",
            headers=bearer(admin),
            query_string={"participant": p.pid, "order": "newest", "limit": len(new)},
        )
        assert [r["seq"] for r in first.json] == sorted(new, reverse=True)
    else:
        # Chain order: every row once, rows added while paging at the end.
        assert sorted(seen) == seen and len(set(seen)) == len(seen)
        assert set(before) <= set(seen) <= set(after)


def test_legacy_after_seq_paging_is_unchanged(client, trial, admin):
    for _ in range(2):
        trial.enrol(day0_ago=None)
    everything = [r["seq"] for r in fetch(client, admin, limit=1000)]
    page = client.get(
        "/api/v1/audit",
        headers=bearer(admin),
        query_string={"after_seq": everything[2], "limit": 3},
    )
    assert [r["seq"] for r in page.json] == everything[3:6]
    assert isinstance(page.json, list)


def test_every_entity_type_of_a_demo_trial_is_linked_or_trial_wide(app, runner, admin, client):
    """A new kind of record under a participant must be found by the participant filter: a
    trail entity type that is neither linked nor trial-wide fails here."""
    result = runner.invoke(args=["trial", "demo", "--participants", "6", "--seed", "5"])
    assert result.exit_code == 0, result.output
    types = set(db.session.scalars(select(AuditEvent.entity_type).distinct()))
    linked = linked_entity_types()
    assert types - linked - TRIAL_WIDE_ENTITIES - {None} == set()
    assert not linked & TRIAL_WIDE_ENTITIES
    # And the demo's participants partition its linked rows.
    pids = sorted(
        r
        for r in db.session.scalars(
            select(AuditEvent.entity_id).distinct().where(AuditEvent.entity_type == "participant")
        )
    )
    rows = [
        seq
        for pid in pids
        for seq in (r["seq"] for r in fetch(client, admin, participant=pid, limit=1000))
    ]
    expected = set(
        db.session.scalars(select(AuditEvent.seq).where(AuditEvent.entity_type.in_(linked)))
    )
    assert len(rows) == len(set(rows)) and set(rows) == expected


# --- blinding: an admin's participant filter tells no arm -----------------------------------

ARM_VARYING_FIELDS = {"randomization_number", "kit_number"}
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(\+00:00|Z)?")


def _blank(value, own_ids: set[str], key: str | None = None):
    """A value with what is the participant's own (its id, its records' ids) or the moment
    it was written (an instant) blanked: the rest must be alike in both arms."""
    if isinstance(value, dict):
        return {k: _blank(v, own_ids, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v, own_ids) for v in value]
    if key is not None and key.endswith("_id") and str(value) in own_ids:
        return "<id>"
    if isinstance(value, str) and (value in own_ids or INSTANT.fullmatch(value)):
        return "<id or instant>"
    return value


def shape(rows: list[dict], own_ids: set[str]) -> list[tuple]:
    """What an attacker compares between two participants' trails: every row's content in
    order, with the participant's own ids, instants and the allocation's own numbers (a
    slot's number and kit, not a function of the arm) blanked."""
    result = []
    for r in rows:
        varying = r["field"] in ARM_VARYING_FIELDS
        result.append(
            (
                r["action"],
                r["entity_type"],
                r["field"],
                r["username"],
                r["role"],
                r["user_site"],
                r["entity_site"],
                r["reason"],
                r["entity_id"] in own_ids,
                None if varying else _blank(r["old_value"], own_ids, r["field"]),
                None if varying else _blank(r["new_value"], own_ids, r["field"]),
                _blank(r["detail"], own_ids),
            )
        )
    return result


def test_an_admins_participant_filter_tells_no_arm(client, trial, admin, make_user):
    from randomization.outputs import allocation_key

    people = [trial.enrol(sex="F", day0_ago=30) for _ in range(4)]
    unblinded = db.session.scalar(select(User).where(User.role == "unblinded_statistician"))
    arm_of = {pid: arm for pid, _number, arm in allocation_key(unblinded)}
    db.session.rollback()
    by_arm = {}
    for person in people:
        by_arm.setdefault(arm_of[person.pid], person)
    assert len(by_arm) == 2, "a block of 4 holds both arms"
    a, b = by_arm.values()
    own = {}
    for person in (a, b):  # the same history, given the same way
        made = history(trial, person.pid, person.day0)
        own[person.pid] = {person.pid, *made.values()}
    for person in (a, b):  # the records made with it (forms, the expedited report)
        rows = fetch(client, admin, participant=person.pid, limit=1000)
        own[person.pid] |= {r["entity_id"] for r in rows}

    def trail(person, **params):
        return fetch(client, admin, participant=person.pid, **params)

    for params in ({"order": "newest", "limit": 5}, {"limit": 1000}):
        rows_a, rows_b = trail(a, **params), trail(b, **params)
        assert len(rows_a) == len(rows_b) > 30
        assert shape(rows_a, own[a.pid]) == shape(rows_b, own[b.pid])
    # The same with a time range covering everything, and pages of one.
    window = {"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z", "limit": 1}
    assert len(trail(a, **window)) == len(trail(b, **window))
    # Negative control: the comparison sees a difference when there is one (one more dose).
    dosed = trial.post(
        f"/participants/{b.pid}/dosing",
        {"date": iso(b.day0 + timedelta(days=5)), "tablets_per_day": 3},
    )
    assert dosed.status_code == 201
    assert shape(trail(a), own[a.pid]) != shape(trail(b), own[b.pid])
