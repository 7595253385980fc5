"""The audit hash pinned (issue 28, item 4): which columns are hashed, how, and what tampering
``audit verify`` then catches.

A row's hash is SHA-256 of ``prev_hash || "\\n" || payload``, the payload being the JSON object
of the hashed columns (keys sorted, no spaces, UTF-8, ``occurred_at`` in ISO form with
microseconds). The known answers below were computed with ``sha256sum`` over payloads written
out by hand, so a change of format (a column added or dropped, a separator, an encoding) fails
here and must be a deliberate, migrated, documented change: old rows keep verifying only with
the format they were hashed with.

The pure tests come first (fast; they are the mutation tests' targets); the database tests
at the end tamper with a real trail on SQLite and, with TEST_DATABASE_URL, PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from tests.mutants import negative_control
from tests.test_audit import build_chain, drop_triggers
from trial.audit import chain
from trial.audit.models import AuditChainHead, AuditEvent
from trial.audit.services import verify_chain
from trial.extensions import db

# The hashed columns, stated once in trial/audit/chain.py and again here, by hand.
HASHED = (
    "seq",
    "occurred_at",
    "user_id",
    "username",
    "role",
    "user_site",
    "action",
    "entity_type",
    "entity_id",
    "entity_site",
    "field",
    "old_value",
    "new_value",
    "reason",
    "detail",
)

ROW = SimpleNamespace(
    seq=7,
    occurred_at=datetime(2026, 1, 15, 10, 20, 30, 123, tzinfo=UTC),
    user_id=3,
    username="cora",
    role="coordinator",
    user_site="S01",
    action="update",
    entity_type="participant",
    entity_id="BAC-S01-0007",
    entity_site="S01",
    field="sex",
    old_value='"F"',
    new_value='"M"',
    reason="Transcription error — CRF p. 2",
    detail=None,
)
PAYLOAD = (
    '{"action":"update","detail":null,"entity_id":"BAC-S01-0007","entity_site":"S01",'
    '"entity_type":"participant","field":"sex","new_value":"\\"M\\"",'
    '"occurred_at":"2026-01-15T10:20:30.000123+00:00","old_value":"\\"F\\"",'
    '"reason":"Transcription error — CRF p. 2","role":"coordinator","seq":7,"user_id":3,'
    '"user_site":"S01","username":"cora"}'
)
HASH = "a0f11abad0dd3244924c5707a05546e9d3f9d071b73bebbc2f87eea1d9a3ad73"  # after the genesis

NEXT_ROW = SimpleNamespace(
    seq=8,
    occurred_at=datetime(2026, 1, 15, 10, 21, tzinfo=UTC),
    user_id=1,
    username="ada",
    role="admin",
    user_site=None,
    action="login",
    entity_type=None,
    entity_id=None,
    entity_site=None,
    field=None,
    old_value=None,
    new_value=None,
    reason=None,
    detail='{"ip":"127.0.0.1"}',
)
NEXT_HASH = "bb70b6c63e0bd8af129f33f3d615f724d14f9aa6f9a34d9abee086ca513e78b6"  # after HASH


def test_the_hashed_columns_are_stated_once():
    assert chain.HASHED_COLUMNS == HASHED


def test_every_stored_column_but_the_hashes_is_hashed():
    """A column added to the table without being added to the hash would be forgeable."""
    stored = [column.name for column in AuditEvent.__table__.columns]
    assert sorted(stored) == sorted(HASHED + ("prev_hash", "hash"))


def test_the_genesis_is_64_zeros():
    assert chain.GENESIS_HASH == "0" * 64


def test_the_payload_of_a_fixed_row():
    assert chain.canonical_payload(ROW) == PAYLOAD
    # the same as the JSON the docstring describes
    values = {column: getattr(ROW, column) for column in HASHED}
    values["occurred_at"] = "2026-01-15T10:20:30.000123+00:00"
    described = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert described == PAYLOAD


def test_the_hash_of_fixed_rows():
    assert chain.chain_hash(chain.GENESIS_HASH, ROW) == HASH
    assert chain.chain_hash(HASH, NEXT_ROW) == NEXT_HASH
    by_hand = hashlib.sha256(("0" * 64 + "\n" + PAYLOAD).encode("utf-8")).hexdigest()
    assert by_hand == HASH
    assert chain.hash_payload(chain.GENESIS_HASH, PAYLOAD) == HASH


def test_whole_seconds_keep_their_microseconds():
    payload = chain.canonical_payload(NEXT_ROW)
    assert '"occurred_at":"2026-01-15T10:21:00.000000+00:00"' in payload


ALTERED = {
    "seq": 8,
    "occurred_at": ROW.occurred_at + timedelta(microseconds=1),
    "user_id": 4,
    "username": "corb",
    "role": "investigator",
    "user_site": "S02",
    "action": "create",
    "entity_type": "visit",
    "entity_id": "BAC-S01-0008",
    "entity_site": "S02",
    "field": "year_of_birth",
    "old_value": '"M"',
    "new_value": '"F"',
    "reason": "Transcription error — CRF p. 3",
    "detail": "{}",
}


@pytest.mark.parametrize("column", HASHED)
def test_each_hashed_column_changes_the_hash(column):
    """Compared with the same row unaltered, hashed by the same code (not only with HASH)."""
    unaltered = chain.chain_hash(chain.GENESIS_HASH, ROW)
    altered = SimpleNamespace(**{**vars(ROW), column: ALTERED[column]})
    assert chain.chain_hash(chain.GENESIS_HASH, altered) != unaltered
    if column not in ("occurred_at", "detail"):  # detail is already None; occurred_at required
        emptied = SimpleNamespace(**{**vars(ROW), column: None})
        assert chain.chain_hash(chain.GENESIS_HASH, emptied) != unaltered


def test_the_previous_hash_changes_the_hash():
    """Rows are chained: the same row after another predecessor hashes differently."""
    assert chain.chain_hash("f" * 64, ROW) != chain.chain_hash(chain.GENESIS_HASH, ROW)
    assert chain.hash_payload("0" * 63 + "1", PAYLOAD) != chain.hash_payload("0" * 64, PAYLOAD)
    # the separator keeps prev_hash and payload apart
    assert (
        chain.hash_payload("0" * 64, PAYLOAD)
        != hashlib.sha256(("0" * 64 + PAYLOAD).encode()).hexdigest()
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -12,
        10**30,
        True,
        False,
        1.5,
        "",
        "plain",
        'quote " and backslash \\',
        "line\nbreak\ttab\x01\x1f",
        "é — ü ✓ 日本 \u2028 \U0001f600",
        "100% sure",
        "[1, 2]",
        ["é", 1],  # not a column's type, but json_value's contract: no ASCII escapes
    ],
)
def test_values_are_written_as_json_dumps_writes_them(value):
    assert chain.json_value(value) == json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return  # columns hold text, numbers or nothing; a list's inner spacing is json.dumps's
    row = SimpleNamespace(**{**vars(ROW), "detail": value, "reason": value})
    values = {column: getattr(row, column) for column in HASHED}
    values["occurred_at"] = "2026-01-15T10:20:30.000123+00:00"
    expected = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert chain.canonical_payload(row) == expected


# --- negative controls ----------------------------------------------------------------------


def leave_out_of_the_hash(monkeypatch, column: str) -> None:
    """The mutant: ``column`` removed from HASHED_COLUMNS (and the payload template)."""
    fewer = tuple(c for c in HASHED if c != column)
    monkeypatch.setattr(chain, "HASHED_COLUMNS", fewer)
    monkeypatch.setattr(chain, "_SORTED_COLUMNS", tuple(sorted(fewer)))
    template = "{" + ",".join(f'"{c}":%s' for c in sorted(fewer)) + "}"
    monkeypatch.setattr(chain, "_TEMPLATE", template)


@negative_control
@pytest.mark.parametrize("column", HASHED)
def test_negative_control_a_column_left_out_of_the_hash_is_caught(monkeypatch, column):
    leave_out_of_the_hash(monkeypatch, column)
    with pytest.raises(AssertionError):
        test_the_hashed_columns_are_stated_once()
    # (without occurred_at the payload cannot even be written: a KeyError)
    with pytest.raises((AssertionError, KeyError)):
        test_the_hash_of_fixed_rows()
    with pytest.raises((AssertionError, KeyError)):
        test_each_hashed_column_changes_the_hash(column)


@negative_control
def test_negative_control_an_unchained_hash_is_caught(monkeypatch):
    def unchained(prev_hash, payload):
        return hashlib.sha256(payload.encode()).hexdigest()

    monkeypatch.setattr(chain, "hash_payload", unchained)
    with pytest.raises(AssertionError):
        test_the_previous_hash_changes_the_hash()


# --- the database: tampering with each column, and a re-chained forgery ----------------------


def tampered_value(column: str, current):
    if column == "seq":
        return current + 100_000
    if column == "occurred_at":
        return current - timedelta(seconds=1)
    if column == "user_id":
        return (current or 0) + 1
    if current == "forged":
        return "forged again"
    return "forged"


def rewrite(row_seq: int, **values) -> None:
    """Change a stored row behind the application's back (the triggers already dropped)."""
    table = AuditEvent.__table__
    db.session.execute(table.update().where(table.c.seq == row_seq).values(**values))
    db.session.commit()
    db.session.expire_all()


def stored(seq: int):
    table = AuditEvent.__table__
    return db.session.execute(select(table).where(table.c.seq == seq)).one()


def test_tampering_with_each_hashed_column_is_detected(app, backend, make_site, make_user):
    """One column at a time on a middle row: verify names that row; put back, it verifies."""
    total = build_chain(make_site, make_user)
    k = total // 2
    drop_triggers(backend)
    for column in HASHED:
        original = getattr(stored(k), column)
        rewrite(k, **{column: tampered_value(column, original)})
        report = verify_chain()
        assert (report.ok, report.broken_seq, report.rows_checked) == (False, k, k - 1), column
        if column == "seq":  # the row moved away: put it back under its own number
            rewrite(tampered_value(column, original), seq=original)
        else:
            rewrite(k, **{column: original})
        assert verify_chain().ok, column


@negative_control
def test_negative_control_an_unhashed_column_goes_unnoticed(
    app, backend, make_site, make_user, monkeypatch
):
    """With entity_type left out of the hash (one of the issue's mutants), a chain written
    and verified that way does not notice entity_type rewritten: the test above would fail."""
    leave_out_of_the_hash(monkeypatch, "entity_type")
    total = build_chain(make_site, make_user)
    assert verify_chain().ok
    drop_triggers(backend)
    rewrite(total // 2, entity_type="forged")
    assert verify_chain().ok  # unnoticed


def rechain(seq: int, prev_hash: str, **values) -> str:
    """Rewrite row ``seq`` with ``values`` and a hash recomputed for its new content."""
    if values:
        rewrite(seq, **values)
    new_hash = chain.chain_hash(prev_hash, stored(seq))
    rewrite(seq, hash=new_hash)
    return new_hash


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_rechained_forgery_of_one_row_is_detected(app, backend, make_site, make_user, where):
    """The forger rewrites one row and recomputes its own hash: the next row no longer links
    to it (or, for the last row, the chain head no longer matches)."""
    total = build_chain(make_site, make_user)
    k = total // 2 if where == "middle" else total
    drop_triggers(backend)
    row = stored(k)
    assert chain.chain_hash(row.prev_hash, row) == row.hash
    rechain(k, row.prev_hash, reason="rewritten later")
    assert chain.chain_hash(row.prev_hash, stored(k)) == stored(k).hash  # the row checks alone
    report = verify_chain()
    assert not report.ok
    if where == "middle":
        assert (report.broken_seq, report.rows_checked) == (k + 1, k), report
        assert f"row {k + 1} does not link to row {k}" in report.problem
    else:
        assert "chain head" in report.problem, report


def test_rechaining_every_later_row_is_still_caught_by_the_chain_head(
    app, backend, make_site, make_user
):
    """Even re-hashing every row after the forged one leaves the chain head behind."""
    total = build_chain(make_site, make_user)
    k = total // 2
    drop_triggers(backend)
    prev = stored(k).prev_hash
    prev = rechain(k, prev, new_value='"forged"')
    for seq in range(k + 1, total + 1):
        rewrite(seq, prev_hash=prev)
        prev = rechain(seq, prev)
    report = verify_chain()
    assert not report.ok and "chain head" in report.problem, report
    head = db.session.get(AuditChainHead, 1)
    assert head.last_seq == total and head.last_hash != prev
