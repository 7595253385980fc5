"""Bad input that used to reach a 500 (issue 22, items 6 and 10): each a 4xx naming the field.

- JSON: a lone UTF-16 surrogate escape in any string or key (``/auth/token`` included), a
  body nested 200,000 deep, an integer literal of thousands of digits, ``NaN``/``Infinity``,
  a key given twice (silently last-wins before), bytes that are not UTF-8.
- Cut-offs: before 1980 (ZIP time stamps), ``0001-01-01T00:00:00+14:00`` and
  ``9999-12-31T23:59:59-14:00`` (OverflowError), on the bundle and the safety report over
  HTTP and from their commands (exit 1 with the message, no traceback, no file).
- Reasons made only of invisible characters (zero-width space, BOM, word joiner, fillers)
  on every body that requires a reason, and in the services behind them.

Every refusal is in the error shape, names the field and writes nothing. Negative controls
put the old behaviour back (the plain ``json.loads``, the old cut-off parser, ``str.strip``
as the test of a reason) and show the same checks then fail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.capture_helpers import Trial, audit_count, counts, iso, today, vitals
from trial.extensions import db
from trial.participants.models import Participant

SHAPE = {"code", "status", "message", "errors"}
D = timedelta(days=1)
PARTICIPANT = {"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": "2026-01-15"}


def participants() -> int:
    return db.session.scalar(select(func.count()).select_from(Participant))


def refusal(response, status: int) -> dict:
    """The response is a ``status`` refusal in the error shape; its ``errors``."""
    db.session.rollback()  # as the app's teardown would (the test shares its context)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert set(body) == SHAPE and body["status"] == status, body
    assert body["errors"] and all(body["errors"].values()), body
    return body["errors"]


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def post_raw(client, path: str, data: str | bytes, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        f"/api/v1{path}", data=data, headers=headers, content_type="application/json"
    )


def body_with(field: str, literal: str) -> str:
    """A participant body whose ``field`` is the raw JSON ``literal``."""
    parts = [f'"{k}": {json.dumps(v)}' for k, v in PARTICIPANT.items() if k != field]
    return "{" + ", ".join([*parts, f'"{field}": {literal}']) + "}"


def deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


TOKEN, PARTICIPANTS = "/auth/token", "/participants"
TWICE = body_with("sex", '"M"').replace("{", '{"sex": "F", ', 1)
# (label, path, raw body, status, the field the errors must name)
JSON_CASES = [
    ("surrogate in the login name", TOKEN, '{"username": "\\ud800", "password": "x"}', 422,
     "username"),
    ("low surrogate in the password", TOKEN, '{"username": "a", "password": "x\\udfff"}', 422,
     "password"),
    ("surrogate in a participant field", PARTICIPANTS, body_with("site", '"S01\\ud800"'), 422,
     "site"),
    ("surrogate in a key", PARTICIPANTS, '{"\\udc00": 1, "site": "S01"}', 422, "\\udc00"),
    ("reversed surrogate pair", PARTICIPANTS, body_with("site", '"\\ude00\\ud83d"'), 422,
     "site"),
    ("nested 200,000 deep", PARTICIPANTS, deep(200_000), 400, "_schema"),
    ("a field nested 200,000 deep", PARTICIPANTS, body_with("site", deep(200_000)), 400, "site"),
    ("a field nested 33 deep", PARTICIPANTS, body_with("site", deep(33)), 400, "site"),
    ("objects nested 100,000 deep", TOKEN, '{"a":' * 100_000 + "1" + "}" * 100_000, 400, "a"),
    ("integer of 5,000 digits", PARTICIPANTS, body_with("year_of_birth", "1" * 5000), 422,
     "year_of_birth"),
    ("integer of 4,301 digits", TOKEN, '{"username": ' + "9" * 4301 + "}", 422, "username"),
    ("negative integer of 101 digits", PARTICIPANTS,
     body_with("year_of_birth", "-" + "1" * 101), 422, "year_of_birth"),
    ("NaN", PARTICIPANTS, body_with("year_of_birth", "NaN"), 422, "year_of_birth"),
    ("-Infinity", PARTICIPANTS, body_with("year_of_birth", "-Infinity"), 422, "year_of_birth"),
    ("a key given twice", PARTICIPANTS, TWICE, 422, "sex"),
    ("a key given twice, login", TOKEN, '{"username": "a", "username": "b", "password": "x"}',
     422, "username"),
    ("a key given twice, then not JSON", PARTICIPANTS, '{"a": 1, "a": 2} x', 400, "_schema"),
    ("NaN, then not JSON", TOKEN, '[NaN, ', 400, "_schema"),
    ("UTF-8 of a surrogate", PARTICIPANTS, b'{"site": "S01\xed\xa0\x80"}', 400, "_schema"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "data", "status", "field"),
    [case[1:] for case in JSON_CASES],
    ids=[case[0] for case in JSON_CASES],
)
def test_json_the_parser_cannot_take_is_a_4xx_naming_the_field(
    client, make_user, path, data, status, field
):
    token = make_user("coordinator")[1]
    before = participants(), audit_count()
    errors = refusal(post_raw(client, path, data, token), status)
    assert field in errors, errors
    assert (participants(), audit_count()) == before


def test_a_duplicate_key_in_a_nested_form_is_named_with_its_path(trial):
    p = trial.enrol(day0_ago=30)
    body = json.dumps({"visit_code": "baseline", "visit_date": iso(p.day0), "vitals": vitals()})
    body = body.replace('"heart_rate": 72', '"heart_rate": 72, "heart_rate": 180')
    before = counts()
    errors = refusal(post_raw(trial.client, f"/participants/{p.pid}/visits", body,
                              trial.coordinator["S01"]), 422)  # fmt: skip
    assert set(errors) == {"vitals.heart_rate"}, errors
    assert counts() == before


def test_what_the_parser_takes_still_passes(client, make_user):
    """Positive controls: a surrogate pair (one character), 32 levels, 100 digits and each
    key once reach the schema, which judges them as before."""
    token = make_user("coordinator")[1]
    ok = post_raw(client, "/participants", json.dumps(PARTICIPANT), token)
    assert ok.status_code == 201, ok.json
    emoji = post_raw(client, "/auth/token", '{"username": "\\ud83d\\ude00", "password": "x"}')
    assert emoji.status_code == 401  # an unknown name, not a malformed one
    errors = refusal(post_raw(client, "/participants", body_with("site", deep(31)), token), 422)
    assert errors == {"site": ["Not a valid string."]}
    hundred = body_with("year_of_birth", "1" * 100)
    errors = refusal(post_raw(client, "/participants", hundred, token), 422)
    assert list(errors) == ["year_of_birth"] and "digits" not in errors["year_of_birth"][0]


def _old_parse(data):
    """The parser before issue 22: plain ``json.loads`` of the UTF-8 text."""
    from trial.json_input import EMPTY

    return json.loads(data.decode("utf-8")) if data else EMPTY


@pytest.mark.parametrize(
    ("label", "path", "data", "old_status"),
    [
        ("surrogate in the login name", "/auth/token", JSON_CASES[0][2], 500),
        ("surrogate in a participant field", "/participants", JSON_CASES[2][2], 500),
        ("nested 200,000 deep", "/participants", JSON_CASES[5][2], 500),
        ("integer of 5,000 digits", "/participants", JSON_CASES[9][2], 500),
        ("a key given twice", "/participants", JSON_CASES[14][2], 201),
    ],
)
def test_control_the_old_parser_fails_these_checks(
    client, make_user, monkeypatch, label, path, data, old_status
):
    """Negative control: with the old parse (plain json.loads) the same requests answer a 500
    or are accepted (the duplicate key's last value stored), and ``refusal`` fails on them."""
    from trial import json_input

    monkeypatch.setattr(json_input, "parse_json_body", _old_parse)
    token = make_user("coordinator")[1]
    response = post_raw(client, path, data, token)
    assert response.status_code == old_status, response.get_data(as_text=True)[:300]
    with pytest.raises(AssertionError):
        refusal(response, 422 if old_status != 500 else 400)


# --- cut-offs ---------------------------------------------------------------------------

BAD_CUTOFFS = [
    "1979-12-31T23:59:59Z",
    "1970-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59.999999Z",
]
ENDPOINTS = {
    "bundle": ("statistician", "/api/v1/exports/blinded", {}),
    "report": ("dsmb", "/api/v1/reports/safety", {"session": "open"}),
}


@pytest.fixture
def central(make_site, make_user):
    make_site("S01")
    return {role: make_user(role) for role in ("statistician", "dsmb")}


@pytest.mark.parametrize("cutoff", BAD_CUTOFFS)
@pytest.mark.parametrize("what", sorted(ENDPOINTS))
def test_a_cutoff_out_of_range_is_422_naming_it(client, central, what, cutoff):
    role, path, query = ENDPOINTS[what]
    before = audit_count()
    response = client.get(
        path,
        query_string={**query, "cutoff": cutoff},
        headers={"Authorization": f"Bearer {central[role][1]}"},
    )
    errors = refusal(response, 422)
    assert set(errors) == {"cutoff"}, errors
    assert audit_count() == before


@pytest.mark.parametrize("what", sorted(ENDPOINTS))
def test_the_earliest_cutoff_is_accepted(client, central, what):
    role, path, query = ENDPOINTS[what]
    response = client.get(
        path,
        query_string={**query, "cutoff": "1980-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {central[role][1]}"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


COMMANDS = {
    "bundle": ["exports", "blinded", "--as", "{user}", "--out", "{out}", "--cutoff", "{cutoff}"],
    "report": [
        "reports", "safety", "--as", "{user}", "--session", "open", "--out", "{out}",
        "--cutoff", "{cutoff}",
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    "cutoff", ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
@pytest.mark.parametrize("what", sorted(COMMANDS))
def test_a_cutoff_out_of_range_makes_the_command_exit_1_with_the_message(
    runner, central, tmp_path, what, cutoff
):
    role = ENDPOINTS[what][0]
    out = tmp_path / "out.file"
    values = {"user": central[role][0].username, "out": str(out), "cutoff": cutoff}
    result = runner.invoke(args=[arg.format(**values) for arg in COMMANDS[what]])
    assert result.exit_code == 1, result.output
    assert "cut-off" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, OverflowError | ValueError)
    assert not out.exists()


def _old_parse_cutoff(value, now=None):
    """The cut-off parser before issue 22: no lower bound, UTC conversion before any check."""
    from trial.database import utcnow
    from trial.errors import ValidationFailed

    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValidationFailed("Invalid input: cutoff.", {"cutoff": ["bad"]}) from None
    if parsed.tzinfo is None:
        raise ValidationFailed("Invalid input: cutoff.", {"cutoff": ["no zone"]})
    parsed = parsed.astimezone(UTC)
    if parsed > utcnow():
        raise ValidationFailed("Invalid input: cutoff.", {"cutoff": ["future"]})
    return parsed


@pytest.mark.parametrize(
    ("what", "cutoff"),
    [
        ("bundle", "1970-01-01T00:00:00Z"),  # ZIP: no time stamps before 1980
        ("bundle", "0001-01-01T00:00:00+14:00"),  # OverflowError
        ("report", "0001-01-01T00:00:00+14:00"),
        ("bundle", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_control_the_old_cutoff_parser_answers_500(client, central, monkeypatch, what, cutoff):
    import exports.snapshot
    import reports.data

    monkeypatch.setattr(exports.snapshot, "parse_cutoff", _old_parse_cutoff)
    monkeypatch.setattr(reports.data, "parse_cutoff", _old_parse_cutoff)
    role, path, query = ENDPOINTS[what]
    response = client.get(
        path,
        query_string={**query, "cutoff": cutoff},
        headers={"Authorization": f"Bearer {central[role][1]}"},
    )
    assert response.status_code == 500
    with pytest.raises(AssertionError):
        refusal(response, 422)


# --- reasons ----------------------------------------------------------------------------

INVISIBLE = {
    "zero-width space": "\u200b",
    "byte order mark": "\ufeff",
    "zero-width joiners and a word joiner": "\u200c\u200d\u2060",
    "spaces and format marks": " \u200b\u00a0\u200e\u200f\u2028\ufeff ",
    "Hangul filler": "\u3164",
    "braille blank": "\u2800",
    "combining mark alone": "\u0301",
    "soft hyphen": "\u00ad",
    "tag characters": "\U000e0041\U000e0042",
}


@pytest.fixture
def records(trial):
    """A randomized participant with a visit with vitals, a dose and an adverse event."""
    p = trial.enrol(day0_ago=30)
    visit = trial.visit(p.pid, "baseline", p.day0, vitals=vitals()).json
    first = trial.post(f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3})
    ae = trial.post(
        f"/participants/{p.pid}/adverse-events",
        {
            "term": "Somnolence",
            "onset_date": iso(p.day0 + D),
            "grade": 1,
            "serious": False,
            "relatedness": "possible",
            "action_taken": "none",
            "outcome": "recovered",
        },
    )
    assert first.status_code == 201 and ae.status_code == 201, (first.json, ae.json)
    return p, {"visit": visit["id"], "vitals": visit["vitals"]["id"], "ae": ae.json["id"]}


def reason_requests(p, ids, reason: str):
    """(role, method, path, body, the field naming the reason) for every body with one."""
    vitals_path, visit_path, ae_path = (
        f"/vitals/{ids['vitals']}",
        f"/visits/{ids['visit']}",
        f"/adverse-events/{ids['ae']}",
    )
    why = {"reason": reason}
    withdrew = {"status": "withdrew", "date": iso(today()), **why}
    dose_change = {"date": iso(p.day0 + 3 * D), "tablets_per_day": 4, "change_reason": reason}
    missed = {"visit_code": "titration_w1", "status": "missed", "missed_reason": reason}
    return [
        ("coordinator", "PATCH", vitals_path, {"heart_rate": 64, **why}, "reason"),
        ("coordinator", "POST", f"{vitals_path}/entered-in-error", why, "reason"),
        ("coordinator", "PATCH", visit_path, {"visit_date": iso(p.day0 + D), **why}, "reason"),
        ("coordinator", "POST", f"{visit_path}/entered-in-error", why, "reason"),
        ("coordinator", "PATCH", ae_path, {"grade": 2, **why}, "reason"),
        ("coordinator", "POST", f"{ae_path}/entered-in-error", why, "reason"),
        ("coordinator", "POST", f"/participants/{p.pid}/disposition", withdrew, "reason"),
        ("coordinator", "POST", f"/participants/{p.pid}/dosing", dose_change, "change_reason"),
        ("coordinator", "POST", f"/participants/{p.pid}/visits", missed, "missed_reason"),
        ("investigator", "POST", f"/participants/{p.pid}/code-break", {**why, "password": "x"},
         "reason"),
    ]  # fmt: skip


def send_all(trial, p, ids, reason):
    for role, method, path, body, field in reason_requests(p, ids, reason):
        before = counts()
        response = trial.request(method, path, body, role=role)
        yield f"{method} {path}", response, field, before


@pytest.mark.parametrize("reason", list(INVISIBLE.values()), ids=list(INVISIBLE))
def test_a_reason_of_invisible_characters_is_no_reason(trial, records, reason):
    p, ids = records
    failures = []
    for where, response, field, before in send_all(trial, p, ids, reason):
        errors = (response.get_json() or {}).get("errors", {})
        if response.status_code != 422 or field not in errors:
            failures.append(f"{where}: {response.status_code} {errors}")
        elif counts() != before:
            failures.append(f"{where}: something was written")
    assert failures == []


def test_a_role_change_needs_a_visible_reason(client, make_user):
    admin = make_user("admin")[1]
    make_user("monitor", username="target")
    headers = {"Authorization": f"Bearer {admin}"}
    for reason in INVISIBLE.values():
        body = {"role": "data_manager", "sites": [], "reason": reason}
        response = client.patch("/api/v1/users/target", json=body, headers=headers)
        assert "reason" in refusal(response, 422), reason


def test_a_visible_reason_among_invisible_characters_is_kept_trimmed(trial, records):
    p, ids = records
    response = trial.patch(
        f"/vitals/{ids['vitals']}",
        {"heart_rate": 64, "reason": "\ufeff\u200b source checked\u200b"},
    )
    assert response.status_code == 200, response.json
    from trial.audit.models import AuditEvent

    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "vitals", AuditEvent.action == "update")
    ).one()
    assert event.reason == "source checked"


def test_services_refuse_an_invisible_reason_for_every_caller(trial, records):
    """Not only the HTTP schema: the services the commands and the demo call refuse too."""
    from randomization.code_break import break_code
    from tests.capture_helpers import PASSWORD
    from trial.audit.services import record_changes
    from trial.auth.services import change_role
    from trial.cli_support import system_actor
    from trial.errors import ValidationFailed
    from trial.forms.models import Vitals
    from trial.records.services import mark_entered_in_error
    from trial.safety.services import withdraw_adverse_event
    from trial.visits.models import Visit
    from trial.visits.services import mark_visit_in_error

    p, ids = records
    actor = trial.make_user("coordinator")[0]
    investigator = trial.investigator_user["S01"]
    target = trial.make_user("monitor")[0]
    participant = db.session.get(Participant, p.id)
    vitals_row, visit = db.session.get(Vitals, ids["vitals"]), db.session.get(Visit, ids["visit"])
    calls = {
        "record_changes": lambda r: record_changes(
            system_actor(), "vitals", "1", {"heart_rate": (72, 64)}, reason=r
        ),
        "mark_entered_in_error": lambda r: mark_entered_in_error(actor, vitals_row, participant, r),
        "mark_visit_in_error": lambda r: mark_visit_in_error(actor, visit.id, r),
        "withdraw_adverse_event": lambda r: withdraw_adverse_event(actor, ids["ae"], r),
        "break_code": lambda r: break_code(investigator, p.pid, reason=r, password=PASSWORD),
        "change_role": lambda r: change_role(
            system_actor(), target, role="data_manager", site_codes=[], reason=r
        ),
    }
    before = audit_count()
    for name, call in calls.items():
        for label, reason in INVISIBLE.items():
            with pytest.raises(ValidationFailed) as refused:
                call(reason)
            assert "reason" in refused.value.errors, (name, label)
            db.session.rollback()
    assert audit_count() == before


def test_clean_reason():
    from trial.reasons import clean_reason

    for reason in INVISIBLE.values():
        assert clean_reason(reason) is None, repr(reason)
    assert clean_reason(None) is None and clean_reason("") is None
    assert clean_reason("\u200b e\u0301te\u0301 \ufeff") == "e\u0301te\u0301"  # marks kept
    assert clean_reason("Sedation") == "Sedation"
    assert clean_reason("\u3164 \u05d0") == "\u05d0"  # Hebrew alef: visible


def test_control_strip_as_the_test_of_a_reason_fails_these_checks(trial, records, monkeypatch):
    """Negative control: with ``str.strip()`` as the test (the code before), a zero-width
    space is a reason: the requests are accepted and the check above would fail."""
    from trial import reasons

    monkeypatch.setattr(reasons, "clean_reason", lambda text: (text or "").strip() or None)
    p, ids = records
    accepted = [
        where
        for where, response, _field, _ in send_all(trial, p, ids, "\u200b")
        if response.status_code < 300
    ]
    assert len(accepted) >= 5, accepted
    with pytest.raises(AssertionError):
        test_a_reason_of_invisible_characters_is_no_reason(trial, records, "\ufeff")
    with pytest.raises(pytest.fail.Exception):  # the services' check fails the same way
        test_services_refuse_an_invisible_reason_for_every_caller(trial, records)
    db.session.rollback()
