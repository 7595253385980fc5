"""Audit completeness: replaying the trail rebuilds every captured record.

A hypothesis state machine drives random sequences of creates (visits with forms, dosing),
corrections (to and from empty values included), entered-in-error marks and signatures
through the API. After every step, replaying ``audit_events`` (entity, field, new value, in
``seq`` order) must give each record's audited fields, its entered-in-error flag and a
visit's signature status exactly as stored, and each correction's old value must be the
value the replay held before it. A change made behind the application's back is caught.
Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select, text

from tests.capture_helpers import PASSWORD, PROTOCOL, Trial, calendar, ciwa, iso, lab, ocds
from trial.audit.models import AuditEvent
from trial.audit.services import encode_value
from trial.extensions import db
from trial.records.registry import RECORD_TYPES

D = timedelta(days=1)
PHASES = (
    [Phase.explicit, Phase.reuse, Phase.generate] if os.environ.get("NO_SHRINK") else list(Phase)
)
CODES = [v["code"] for v in PROTOCOL["visits"]]
DAY = {v["code"]: v["day"] for v in PROTOCOL["visits"]}
# What a record is before any audited change: the flags set at creation without a row.
INITIAL = {"entered_in_error": encode_value(False)}
VISIT_INITIAL = {"signature_status": encode_value("unsigned")}
EXTRA_FIELDS = {"visit": ("signature_status",)}


# --- the replay check ------------------------------------------------------------------


def replay() -> tuple[dict, list[str]]:
    """Rebuild every record from the trail; also list corrections whose old value is not
    the value the trail held at that point."""
    state: dict[tuple[str, str], dict] = defaultdict(dict)
    problems = []
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type.in_(list(RECORD_TYPES)), AuditEvent.field.is_not(None))
        .order_by(AuditEvent.seq)
    )
    for event in events:
        key = (event.entity_type, event.entity_id)
        if not state[key]:
            state[key] = {**INITIAL, **(VISIT_INITIAL if event.entity_type == "visit" else {})}
        if event.action != "create":
            held = state[key].get(event.field)
            if held != event.old_value:
                problems.append(
                    f"seq {event.seq} {key} {event.field}: old value {event.old_value!r} "
                    f"but the trail held {held!r}"
                )
        state[key][event.field] = event.new_value
    return state, problems


def stored() -> dict:
    """Every captured record as stored, encoded the way the trail encodes values."""
    db.session.expire_all()
    out = {}
    for entity, model in RECORD_TYPES.items():
        fields = (*model.AUDITED_FIELDS, "entered_in_error", *EXTRA_FIELDS.get(entity, ()))
        for record in db.session.scalars(select(model)):
            out[(entity, str(record.id))] = {f: encode_value(getattr(record, f)) for f in fields}
    return out


def replay_mismatches() -> list[str]:
    rebuilt, problems = replay()
    current = stored()
    for key in sorted(set(rebuilt) | set(current)):
        if key not in rebuilt:
            problems.append(f"{key} is stored but has no audit rows")
        elif key not in current:
            problems.append(f"{key} is in the trail but not stored")
        elif rebuilt[key] != current[key]:
            diff = {
                f: (rebuilt[key].get(f), v)
                for f, v in current[key].items()
                if rebuilt[key].get(f) != v
            }
            problems.append(f"{key}: replayed vs stored {diff}")
    return problems


# --- the state machine -----------------------------------------------------------------

weights = st.one_of(st.none(), st.floats(30, 300).map(lambda w: round(w, 1)))
texts = st.sampled_from(["titration step", "sedation", "patient request", "fall", "  spaced  "])


class CaptureMachine(RuleBasedStateMachine):
    """One participant per run, randomized 240 days ago, so every visit code has a date."""

    trial: Trial  # set by the test
    strata = iter([])

    def __init__(self):
        super().__init__()
        site, sex = next(self.strata)
        self.p = self.trial.enrol(day0_ago=240, screening=False, site=site, sex=sex)
        self.site = site
        # An investigator of this run's own: wrong passwords count towards a lockout.
        self.investigator = self.trial.make_user("investigator", sites=[site], password=PASSWORD)[1]
        self.wrong_passwords = 0
        # id -> {"code", "status", "forms", "active"}; the screening visit randomization needed
        # is there from the start (its calendar day is not tracked as a form here).
        self.visits: dict[int, dict] = {
            self.p.screening_id: {
                "code": "screening",
                "status": "completed",
                "forms": [],
                "active": True,
            }
        }
        self.forms: dict[tuple[str, int], dict] = {}  # (path, id) -> {"visit", "active"}
        self.dosing: dict[int, dict] = {}  # id -> {"active"}
        self.used_doses: set[int] = set()

    def ok(self, response, *allowed):
        assert response.status_code < 500, response.json
        assert response.status_code in allowed, (response.status_code, response.json)
        return response

    # creates

    @rule(
        code=st.sampled_from(CODES),
        shift=st.sampled_from([0, 0, 1, -1, 9]),
        missed=st.booleans(),
        with_vitals=st.booleans(),
        weight=weights,
        with_scales=st.booleans(),
        with_lab=st.booleans(),
        with_days=st.booleans(),
    )
    def create_visit(
        self, code, shift, missed, with_vitals, weight, with_scales, with_lab, with_days
    ):
        taken = any(v["code"] == code and v["active"] for v in self.visits.values())
        if missed:
            response = self.trial.visit(
                self.p.pid, code, status="missed", missed_reason="did not attend", site=self.site
            )
            self.ok(response, 409 if taken else 201)
        else:
            day = self.p.day0 + (DAY[code] + shift) * D
            if code == "screening":
                day = self.p.day0 - 14 * D
            if code == "baseline":
                day = self.p.day0
            body = {}
            if with_vitals:
                body["vitals"] = {
                    "systolic_bp": 130,
                    "diastolic_bp": 85,
                    "heart_rate": 70,
                    "weight_kg": weight,
                }
            if with_scales:
                body["ocds"], body["ciwa"] = ocds(2), ciwa(1)
            if with_lab:
                body["labs"] = [lab("GGT"), lab("CDT", value=1.8, upper_limit_normal=1.7)]
            if with_days:
                body["drinking"] = calendar(day - D, day - D, drinks=3)
            if shift == 9:  # outside every window: said why
                body["out_of_window_reason"] = "Participant away"
            response = self.trial.visit(self.p.pid, code, day, site=self.site, **body)
            if taken:
                self.ok(response, 409)
            elif with_days:  # the day may be taken, or outside the period, by now
                self.ok(response, 201, 422)
            else:
                self.ok(response, 201)
        if response.status_code != 201:
            return
        visit = response.json
        self.visits[visit["id"]] = {
            "code": code,
            "status": visit["status"],
            "forms": [],
            "active": True,
        }
        for path, rows in (
            ("drinking-days", visit["drinking"]),
            ("labs", visit["labs"]),
            *((path, [visit[key]] if visit[key] else []) for path, key in SINGLES),
        ):
            for row in rows:
                self.forms[(path, row["id"])] = {"visit": visit["id"], "active": True}
                self.visits[visit["id"]]["forms"].append((path, row["id"]))

    @rule(day=st.integers(0, 200), tablets=st.integers(0, 9), reason=st.one_of(st.none(), texts))
    def create_dosing(self, day, tablets, reason):
        body = {"date": iso(self.p.day0 + day * D), "tablets_per_day": tablets}
        if reason is not None:
            body["change_reason"] = reason
        response = self.ok(
            self.trial.post(f"/participants/{self.p.pid}/dosing", body, site=self.site), 201, 422
        )
        if day in self.used_doses:
            assert response.status_code == 422
        if response.status_code == 201:
            self.used_doses.add(day)
            self.dosing[response.json["id"]] = {"active": True, "day": day}

    # corrections

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def correct_visit(self, data):
        vid = data.draw(st.sampled_from(sorted(self.visits)))
        visit = self.visits[vid]
        change = data.draw(
            st.sampled_from(
                [
                    {"missed_reason": "transport strike"},
                    {"missed_reason": None},
                    {"status": "missed", "missed_reason": "was not there"},
                    {"status": "completed", "visit_date": iso(self.p.day0 + day_of(visit) * D)},
                    {"visit_date": iso(self.p.day0 + (day_of(visit) + 1) * D)},
                ]
            )
        )
        response = self.trial.patch(
            f"/visits/{vid}", {**change, "reason": "correction"}, site=self.site
        )
        self.ok(response, 200, 409, 422)
        if not visit["active"]:
            assert response.status_code == 409
        if response.status_code == 200:
            visit["status"] = response.json["status"]

    @precondition(lambda self: self.forms)
    @rule(data=st.data(), weight=weights, item=st.integers(0, 4), drinks=st.integers(0, 60))
    def correct_form(self, data, weight, item, drinks):
        path, rid = data.draw(st.sampled_from(sorted(self.forms)))
        change = {
            "vitals": {"weight_kg": weight},
            "ocds": {"item_3": item},
            "ciwa": {"orientation": item},
            "labs": {"value": float(drinks + 1)},
            "drinking-days": {"standard_drinks": drinks},
        }[path]
        response = self.trial.patch(
            f"/{path}/{rid}", {**change, "reason": "source document"}, site=self.site
        )
        if not self.forms[(path, rid)]["active"]:
            self.ok(response, 409)
        elif path == "drinking-days":  # re-checked against the visit's current period
            self.ok(response, 200, 422)
        else:
            self.ok(response, 200)

    @precondition(lambda self: self.dosing)
    @rule(
        data=st.data(),
        reason=st.one_of(st.none(), texts),
        returned=st.one_of(st.none(), st.integers(0, 60)),
    )
    def correct_dosing(self, data, reason, returned):
        rid = data.draw(st.sampled_from(sorted(self.dosing)))
        response = self.trial.patch(
            f"/dosing/{rid}",
            {"change_reason": reason, "tablets_returned": returned, "reason": "pharmacy log"},
            site=self.site,
        )
        self.ok(response, 200, 409, 422)

    # marks and signatures

    @precondition(lambda self: self.visits or self.forms or self.dosing)
    @rule(data=st.data())
    def mark_in_error(self, data):
        choices = (
            [("visits", v) for v in self.visits]
            + list(self.forms)
            + [("dosing", d) for d in self.dosing]
        )
        path, rid = data.draw(st.sampled_from(sorted(choices)))
        response = self.trial.post(
            f"/{path}/{rid}/entered-in-error", {"reason": "wrong entry"}, site=self.site
        )
        self.ok(response, 200, 409)
        state = {"visits": self.visits, "dosing": self.dosing}.get(path, self.forms)
        key = rid if path in ("visits", "dosing") else (path, rid)
        assert (response.status_code == 200) == state[key]["active"]
        if response.status_code == 200:
            state[key]["active"] = False
            if path == "dosing":  # its date is free again
                self.used_doses.discard(self.dosing[rid]["day"])
            if path == "visits":  # its forms go with it
                for form in self.visits[rid]["forms"]:
                    self.forms[form]["active"] = False

    @precondition(lambda self: self.visits)
    @rule(data=st.data(), right=st.booleans())
    def sign(self, data, right):
        vid = data.draw(st.sampled_from(sorted(self.visits)))
        right = right or self.wrong_passwords >= 5  # stay clear of the login lockout
        response = self.trial.post(
            f"/visits/{vid}/sign",
            {"password": PASSWORD if right else "wrong password"},
            token=self.investigator,
        )
        self.wrong_passwords += not right and self.visits[vid]["active"]
        if not self.visits[vid]["active"]:
            self.ok(response, 409)
        else:
            self.ok(response, 200 if right else 403)

    @precondition(
        lambda self: self.wrong_passwords < 5 and any(v["active"] for v in self.visits.values())
    )
    @rule(data=st.data())
    def sign_with_a_wrong_password(self, data):
        """The refused signature, taken on purpose (its audit row must replay to nothing)."""
        vid = data.draw(st.sampled_from(sorted(v for v, s in self.visits.items() if s["active"])))
        response = self.trial.post(
            f"/visits/{vid}/sign", {"password": "wrong password"}, token=self.investigator
        )
        self.ok(response, 403)
        self.wrong_passwords += 1

    @precondition(lambda self: any(v["active"] for v in self.visits.values()))
    @rule(data=st.data())
    def change_a_signed_visit(self, data):
        """Sign, then change: the path that invalidates a signature, taken on purpose."""
        vid = data.draw(st.sampled_from(sorted(v for v, s in self.visits.items() if s["active"])))
        signed = self.trial.post(
            f"/visits/{vid}/sign", {"password": PASSWORD}, token=self.investigator
        )
        self.ok(signed, 200)
        current = signed.json["missed_reason"]
        toggled = "rescheduled" if current in (None, "did not attend") else "did not attend"
        if signed.json["status"] == "completed" and current is not None:
            toggled = None
        response = self.trial.patch(
            f"/visits/{vid}", {"missed_reason": toggled, "reason": "review"}, site=self.site
        )
        self.ok(response, 200)
        assert response.json["signature_status"] == "invalidated"

    @invariant()
    def the_trail_replays_to_the_stored_records(self):
        assert replay_mismatches() == []


SINGLES = (("ocds", "ocds"), ("ciwa", "ciwa"), ("vitals", "vitals"))


def day_of(visit) -> int:  # noqa: N802 - reads like the protocol's "day" of a visit
    return DAY[visit["code"]]


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant, planned=150)


def test_replaying_the_audit_trail_rebuilds_every_record(trial):
    from hypothesis.stateful import run_state_machine_as_test

    CaptureMachine.trial = trial
    CaptureMachine.strata = itertools.cycle(
        [("S01", "F"), ("S02", "M"), ("S01", "M"), ("S02", "F")]
    )
    run_state_machine_as_test(
        CaptureMachine,
        settings=settings(
            max_examples=int(os.environ.get("AUDIT_REPLAY_EXAMPLES", 12)),
            stateful_step_count=int(os.environ.get("AUDIT_REPLAY_STEPS", 18)),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=PHASES,
            # Fixed examples (FUZZ_RANDOM=1 explores): the coverage check below must not
            # depend on luck (a random run missed every refused signature about 1 in 4).
            derandomize=not os.environ.get("FUZZ_RANDOM"),
        ),
    )
    # The runs reached the interesting cases, empty values recorded as SQL NULL.
    db.session.rollback()
    seen = {
        name: db.session.execute(text(f"SELECT count(*) FROM audit_events WHERE {where}")).scalar()
        for name, where in {
            "to empty": "action = 'update' AND old_value IS NOT NULL AND new_value IS NULL",
            "from empty": "action = 'update' AND old_value IS NULL AND new_value IS NOT NULL",
            "corrections": "action = 'update'",
            "marks": "action = 'entered_in_error'",
            "signatures": "action = 'sign'",
            "refused signatures": "action = 'sign_refused'",
            "invalidations": "action = 'signature_invalidated'",
        }.items()
    }
    db.session.rollback()
    assert all(seen.values()), repr(seen)


def audit_values(entity: str, record_id: int, field: str) -> list[tuple]:
    """(action, old_value, new_value) of one field, straight from SQL (NULL stays None)."""
    rows = db.session.execute(
        text(
            "SELECT action, old_value, new_value FROM audit_events WHERE entity_type = :e "
            "AND entity_id = :i AND field = :f ORDER BY seq"
        ),
        {"e": entity, "i": str(record_id), "f": field},
    ).all()
    db.session.rollback()
    return [tuple(row) for row in rows]


def test_changes_to_and_from_empty_are_recorded_as_sql_null(trial):
    p = trial.enrol(day0_ago=30)
    vitals = {"systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 60}
    visit = trial.visit(p.pid, "baseline", p.day0, vitals={**vitals, "weight_kg": 80}).json
    vid = visit["vitals"]["id"]
    for weight in (None, 81.5):
        response = trial.patch(f"/vitals/{vid}", {"weight_kg": weight, "reason": "scale"})
        assert response.status_code == 200, response.json
    assert audit_values("vitals", vid, "weight_kg") == [
        ("create", None, "80.0"),
        ("update", "80.0", None),
        ("update", None, "81.5"),
    ]
    unweighed = trial.visit(p.pid, "titration_w1", p.day0 + 7 * D, vitals=vitals).json
    assert audit_values("vitals", unweighed["vitals"]["id"], "weight_kg") == [
        ("create", None, None)
    ]
    dose = trial.post(
        f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3}
    ).json
    for reason in ("started at 3", None):
        response = trial.patch(f"/dosing/{dose['id']}", {"change_reason": reason, "reason": "x"})
        assert response.status_code == 200, response.json
    assert audit_values("dosing", dose["id"], "change_reason") == [
        ("create", None, None),
        ("update", None, '"started at 3"'),
        ("update", '"started at 3"', None),
    ]
    missed = trial.visit(p.pid, "titration_w2", status="missed", missed_reason="ill").json
    response = trial.patch(
        f"/visits/{missed['id']}",
        {"status": "completed", "visit_date": iso(p.day0 + 14 * D), "reason": "it happened"},
    )
    assert response.status_code == 200, response.json
    assert audit_values("visit", missed["id"], "missed_reason") == [
        ("create", None, '"ill"'),
        ("update", '"ill"', None),
    ]
    assert audit_values("visit", missed["id"], "visit_date") == [
        ("create", None, None),
        ("update", None, f'"{iso(p.day0 + 14 * D)}"'),
    ]
    assert replay_mismatches() == []
    db.session.rollback()


TAMPERING = {
    "a value": "UPDATE vitals SET weight_kg = 99 WHERE id = :id",
    "a value to empty": "UPDATE vitals SET weight_kg = NULL WHERE id = :id",
    "the entered-in-error flag": "UPDATE vitals SET entered_in_error = :true WHERE id = :id",
}


@pytest.mark.parametrize("what", list(TAMPERING))
def test_a_change_without_an_audit_row_is_caught(trial, what):
    p = trial.enrol(day0_ago=30)
    visit = trial.visit(
        p.pid,
        "baseline",
        p.day0,
        vitals={"systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 60, "weight_kg": 70},
    ).json
    assert replay_mismatches() == []
    db.session.execute(text(TAMPERING[what]), {"id": visit["vitals"]["id"], "true": True})
    db.session.commit()
    problems = replay_mismatches()
    db.session.rollback()
    assert len(problems) == 1 and f"('vitals', '{visit['vitals']['id']}')" in problems[0]


def test_a_record_inserted_without_audit_rows_is_caught(trial):
    p = trial.enrol(day0_ago=30)
    visit = trial.visit(p.pid, "baseline", p.day0).json
    db.session.execute(
        text(
            "INSERT INTO ocds_assessments (visit_id, participant_id, created_by_id, created_at,"
            " updated_at, version, entered_in_error, "
            + ", ".join(f"item_{n}" for n in range(1, 15))
            + ") SELECT id, participant_id, created_by_id, created_at, updated_at, 1, :false, "
            + ", ".join("1" for _ in range(14))
            + " FROM visits WHERE id = :id"
        ),
        {"id": visit["id"], "false": False},
    )
    db.session.commit()
    problems = replay_mismatches()
    db.session.rollback()
    assert len(problems) == 1 and "has no audit rows" in problems[0]
