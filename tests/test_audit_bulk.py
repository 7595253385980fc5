"""The many-record paths (``record_events``, ``create_records``) store and chain exactly what
the single-record paths do, so the trail verifies whichever path wrote it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from trial.audit.chain import HASHED_COLUMNS, canonical_payload, payload_of
from trial.audit.models import AuditEvent
from trial.audit.services import encode_value, record_event, record_events, verify_chain
from trial.extensions import db
from trial.forms.models import DrinkingDay
from trial.participants.services import get_visible_participant
from trial.records.bulk import create_records
from trial.records.services import create_record

values = st.one_of(st.none(), st.text(), st.integers(), st.text(alphabet='%"\\\n\t\x00é☃'))


@given(st.fixed_dictionaries({column: values for column in HASHED_COLUMNS}))
def test_payload_is_the_sorted_compact_json_of_the_columns(row):
    expected = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert payload_of(row) == expected


@given(
    st.one_of(
        st.none(),
        st.text(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.dates(),
        st.lists(st.integers()),
        st.dictionaries(st.text(), st.integers()),
    )
)
def test_encode_value_is_json_dumps(value):
    raw = value.isoformat() if hasattr(value, "isoformat") else value
    expected = None if value is None else json.dumps(raw, ensure_ascii=False, sort_keys=True)
    assert encode_value(value) == expected


@pytest.mark.parametrize("path", ["few (one insert)", "bulk (inserts of 7 rows)"])
def test_bulk_events_chain_with_single_events_and_verify(app, path, monkeypatch):
    from trial.audit import services
    from trial.cli_support import system_actor

    if path.startswith("bulk"):
        monkeypatch.setattr(services, "CHUNK", 7)  # 20 events: inserts of 7, 7 and 6
    actor = system_actor()
    record_event(actor, "create", entity_type="x", entity_id="1", field="a", new="é")
    assert record_events(actor, []) == 0
    events = [
        {
            "action": "create",
            "entity_type": "x",
            "entity_id": str(n),
            "field": "day",
            "new": date(2025, 1, n),
            "detail": {"n": n, "why": "100%"},
        }
        for n in range(1, 21)
    ]
    count = record_events(actor, events if path.startswith("few") else iter(events))
    record_event(
        actor, "update", entity_type="x", entity_id="1", field="a", old="é", new=2.5, reason="typo"
    )
    db.session.commit()
    assert count == 20
    report = verify_chain()
    assert report.ok and report.rows_checked == 22, report
    # Each bulk row hashes, read back, exactly as record_event's rows do.
    for event in db.session.scalars(select(AuditEvent)):
        assert event.occurred_at.tzinfo is not None
        assert canonical_payload(event)


def test_bulk_records_are_stored_and_audited_like_single_ones(app, make_user, make_participant):
    coordinator, _ = make_user("coordinator", sites=["S01"])
    pid = make_participant(site="S01", consent_date="2025-01-10")["participant_id"]
    participant = get_visible_participant(coordinator, pid)
    single = create_record(
        coordinator, DrinkingDay, participant, {"day": date(2025, 1, 2), "standard_drinks": 4.5}
    )
    [bulk] = create_records(
        coordinator,
        [
            (
                DrinkingDay,
                participant,
                {"day": date(2025, 1, 3), "standard_drinks": 4.5, "visit_id": None},
            )
        ],
    )
    bulk_id = bulk.id
    db.session.commit()
    raw = {
        row.id: row
        for row in db.session.execute(
            text(
                "SELECT id, day, standard_drinks, created_at, entered_in_error, version "
                "FROM drinking_days"
            )
        )
    }
    first, second = raw[single.id], raw[bulk_id]
    assert type(first.day) is type(second.day) and type(first.created_at) is type(second.created_at)
    assert len(str(first.day)) == len(str(second.day))
    assert len(str(first.created_at)) == len(str(second.created_at))
    assert (first.standard_drinks, first.entered_in_error, first.version) == (
        second.standard_drinks,
        second.entered_in_error,
        second.version,
    )
    trail = {
        entity_id: sorted(
            (e.action, e.field, e.old_value, e.entity_site, e.username)
            for e in db.session.scalars(
                select(AuditEvent).where(
                    AuditEvent.entity_type == "drinking_day", AuditEvent.entity_id == entity_id
                )
            )
        )
        for entity_id in (str(single.id), str(bulk_id))
    }
    assert trail[str(single.id)] == trail[str(bulk_id)] and len(trail[str(bulk_id)]) == 2
    assert verify_chain().ok


def test_occurred_at_reads_back_as_hashed(app):
    from trial.cli_support import system_actor

    record_events(system_actor(), [{"action": "create", "entity_type": "x", "entity_id": "9"}])
    db.session.commit()
    db.session.remove()
    event = db.session.scalars(select(AuditEvent)).one()
    assert event.occurred_at <= datetime.now(UTC)
    assert verify_chain().ok
