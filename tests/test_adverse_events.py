"""Adverse events: validation, site isolation, corrections, entered-in-error, derived
treatment-emergence, expedited reports and blinding.

Every refusal is checked to name the field and to write nothing (AE rows, audit rows and
expedited reports counted before and after, on the committed state).
"""

from __future__ import annotations

import ast
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer, make_ready_for_randomization
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.participants.services import site_today
from trial.safety import services
from trial.safety.models import AdverseEvent, ExpeditedReport
from trial.sites.services import get_site_by_code

ROLES = (
    "admin",
    "coordinator",
    "investigator",
    "monitor",
    "data_manager",
    "statistician",
    "unblinded_statistician",
    "dsmb",
)
ARM_LABELS = ("baclofen", "placebo")
AE_FIELDS = {
    "id",
    "participant_id",
    "site",
    "term",
    "onset_date",
    "end_date",
    "grade",
    "serious",
    "seriousness_criteria",
    "awareness_date",
    "relatedness",
    "action_taken",
    "outcome",
    "preferred_term",
    "system_organ_class",
    "coded",
    "coding_source",
    "treatment_emergent",
    "version",
    "entered_in_error",
    "error_reason",
    "created_at",
    "updated_at",
}


def body(**overrides) -> dict:
    base = {
        "term": "Somnolence",
        "onset_date": (date.today() - timedelta(days=10)).isoformat(),
        "grade": 2,
        "serious": False,
        "seriousness_criteria": [],
        "relatedness": "possible",
        "action_taken": "none",
        "outcome": "recovering",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def aware_at_onset(payload: dict) -> dict:
    """A serious event needs the site's awareness date: here, the onset's."""
    payload.setdefault("awareness_date", payload["onset_date"])
    return payload


def serious(**overrides) -> dict:
    return aware_at_onset(
        body(
            **{
                "serious": True,
                "seriousness_criteria": ["hospitalisation"],
                "grade": 3,
                **overrides,
            }
        )
    )


def fatal(**overrides) -> dict:
    return aware_at_onset(
        body(
            **{
                "serious": True,
                "seriousness_criteria": ["death"],
                "grade": 5,
                "outcome": "fatal",
                "action_taken": "not_applicable",
                **overrides,
            }
        )
    )


def committed_counts() -> tuple[int, int, int]:
    db.session.rollback()  # count what was committed, not what a failed request left pending
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (AdverseEvent, AuditEvent, ExpeditedReport)
    )


class Env:
    """Two sites, a participant at each, and a token of every role (site roles at S01)."""

    def __init__(self, client, make_site, make_user, make_participant, s01_timezone="UTC"):
        self.client = client
        make_site("S01", timezone=s01_timezone)
        make_site("S02")
        consent = (date.today() - timedelta(days=60)).isoformat()
        self.consent = date.fromisoformat(consent)
        self.pid = make_participant(site="S01", consent_date=consent)["participant_id"]
        self.other_pid = make_participant(site="S02", consent_date=consent)["participant_id"]
        self.make_user = make_user
        self.tokens: dict[str, str] = {}  # made on first use: users cost a database round trip
        self.token("coordinator")

    @property
    def s02(self) -> str:
        return self.token("coordinator@S02")

    @property
    def s02_monitor(self) -> str:
        return self.token("monitor@S02")

    def token(self, who: str) -> str:
        if who not in self.tokens:
            role, _, site = who.partition("@")
            self.tokens[who] = self.make_user(role, sites=[site] if site else None)[1]
        return self.tokens[who]

    def as_(self, role_or_token):
        return bearer(self.token(role_or_token) if role_or_token in ROLES else role_or_token)

    def post(self, payload, pid=None, token="coordinator"):
        return self.client.post(
            f"/api/v1/participants/{pid or self.pid}/adverse-events",
            headers=self.as_(token),
            json=payload,
        )

    def create(self, payload=None, pid=None, token="coordinator") -> dict:
        response = self.post(payload or body(), pid=pid, token=token)
        assert response.status_code == 201, response.json
        return response.json

    def get(self, ae_id, token="coordinator"):
        return self.client.get(f"/api/v1/adverse-events/{ae_id}", headers=self.as_(token))

    def patch(self, ae_id, payload, token="coordinator"):
        return self.client.patch(
            f"/api/v1/adverse-events/{ae_id}", headers=self.as_(token), json=payload
        )

    def in_error(self, ae_id, reason="duplicate entry", token="coordinator"):
        return self.client.post(
            f"/api/v1/adverse-events/{ae_id}/entered-in-error",
            headers=self.as_(token),
            json={"reason": reason} if reason is not None else {},
        )

    def listing(self, pid=None, token="coordinator", query=""):
        return self.client.get(
            f"/api/v1/participants/{pid or self.pid}/adverse-events{query}",
            headers=self.as_(token),
        )


@pytest.fixture
def env(client, make_site, make_user, make_participant) -> Env:
    return Env(client, make_site, make_user, make_participant)


def audit_rows(ae_id, action=None) -> list[AuditEvent]:
    statement = select(AuditEvent).where(
        AuditEvent.entity_type == "adverse_event", AuditEvent.entity_id == str(ae_id)
    )
    if action:
        statement = statement.where(AuditEvent.action == action)
    return list(db.session.scalars(statement.order_by(AuditEvent.seq)))


# --- reporting --------------------------------------------------------------------------


def test_report_codes_the_term_and_audits_every_field(env):
    created = env.create(body(term="  drowsiness "))
    assert set(created) == AE_FIELDS
    assert created["term"] == "drowsiness"
    assert created["preferred_term"] == "Somnolence"
    assert created["system_organ_class"] == "Nervous system disorders"
    assert (created["coded"], created["coding_source"]) == (True, "builtin")
    assert created["treatment_emergent"] is False  # no first dose recorded
    assert created["participant_id"] == env.pid and created["site"] == "S01"
    assert (created["version"], created["entered_in_error"]) == (1, False)

    rows = audit_rows(created["id"])
    assert {r.field for r in rows} == set(AdverseEvent.AUDITED_FIELDS)
    assert all(r.action == "create" and r.old_value is None and r.reason is None for r in rows)
    by_field = {r.field: json.loads(r.new_value) if r.new_value else None for r in rows}
    assert by_field["preferred_term"] == "Somnolence"
    assert by_field["criterion_death"] is False
    assert all(r.entity_site == "S01" for r in rows)

    assert env.get(created["id"]).json == created
    assert env.listing().json == [created]


def test_validation_matrix_names_each_field_and_writes_nothing(env):
    today = date.today()
    consent = env.consent
    cases = [
        # (what, payload, field named in errors)
        ("end before onset", body(end_date=(today - timedelta(days=11)).isoformat()), "end_date"),
        ("end in the future", body(end_date=(today + timedelta(days=1)).isoformat()), "end_date"),
        ("serious without criterion", body(serious=True, grade=3), "seriousness_criteria"),
        (
            "criterion without serious",
            body(seriousness_criteria=["disability"]),
            "seriousness_criteria",
        ),
        ("grade 5 not fatal", serious(grade=5), "outcome"),
        ("fatal not grade 5", fatal(grade=4), "grade"),
        (
            "fatal without death",
            body(serious=True, seriousness_criteria=["hospitalisation"], grade=5, outcome="fatal"),
            "seriousness_criteria",
        ),
        (
            "death criterion not fatal",
            body(serious=True, seriousness_criteria=["death"], grade=4),
            "outcome",
        ),
        (
            "onset in the future",
            body(onset_date=(today + timedelta(days=1)).isoformat()),
            "onset_date",
        ),
        (
            "onset before consent",
            body(onset_date=(consent - timedelta(days=1)).isoformat()),
            "onset_date",
        ),
        ("grade 0", body(grade=0), "grade"),
        ("grade 6", body(grade=6), "grade"),
        ("grade as text", body(grade="3"), "grade"),
        ("grade fractional", body(grade=2.5), "grade"),
        ("serious as text", body(serious="yes"), "serious"),
        ("serious as number", body(serious=1), "serious"),
        ("unknown relatedness", body(relatedness="maybe"), "relatedness"),
        ("unknown action", body(action_taken="stopped"), "action_taken"),
        ("unknown outcome", body(outcome="dead"), "outcome"),
        (
            "unknown criterion",
            serious(seriousness_criteria=["bankruptcy"]),
            "seriousness_criteria.0",
        ),
        (
            "criterion twice",
            serious(seriousness_criteria=["hospitalisation", "hospitalisation"]),
            "seriousness_criteria",
        ),
        ("criteria null", body(seriousness_criteria=None), "seriousness_criteria"),
        ("empty term", body(term=""), "term"),
        ("blank term", body(term="   "), "term"),
        ("term too long", body(term="x" * 201), "term"),
        ("impossible date", body(onset_date="2026-02-30"), "onset_date"),
        ("end date text", body(end_date="soon"), "end_date"),
        ("unknown field", body(arm="A"), "arm"),
        *[
            (f"missing {f}", body(**{f: ...}), f)
            for f in (
                "term",
                "onset_date",
                "grade",
                "serious",
                "relatedness",
                "action_taken",
                "outcome",
            )
        ],
    ]
    before = committed_counts()
    failures = []
    for what, payload, field in cases:
        response = env.post(payload)
        ok = (
            response.status_code == 422
            and response.json["code"] == "validation_error"
            and field in response.json["errors"]
            and all(response.json["errors"][field])
        )
        if not ok:
            failures.append(f"{what}: {response.status_code} {response.json}")
        elif committed_counts() != before:
            failures.append(f"{what}: something was written")
    assert not failures, "\n".join(failures)
    print(f"\n{len(cases)} refused AE inputs, each naming its field")


def test_several_bad_fields_are_all_named(env):
    response = env.post(
        serious(
            grade=5,
            outcome="recovered",
            end_date=(date.today() - timedelta(days=20)).isoformat(),
        )
    )
    assert response.status_code == 422
    assert {"end_date", "outcome"} <= set(response.json["errors"])
    assert "end_date" in response.json["message"] and "outcome" in response.json["message"]


def test_boundary_values_are_accepted(env):
    today = date.today().isoformat()
    consent = env.consent.isoformat()
    accepted = [
        body(grade=1),
        fatal(),
        fatal(seriousness_criteria=["death", "life_threatening", "hospitalisation"]),
        body(onset_date=today),
        body(onset_date=today, end_date=today),
        body(onset_date=consent),
        body(onset_date=consent, end_date=consent),
        body(end_date=None),
        body(term="x" * 200),
        body(grade=4, serious=False),
        *[
            serious(seriousness_criteria=[c])
            for c in (
                "life_threatening",
                "hospitalisation",
                "disability",
                "congenital_anomaly",
                "other_important",
            )
        ],
        *[
            body(relatedness=r)
            for r in ("not_related", "unlikely", "possible", "probable", "definite")
        ],
        *[
            body(action_taken=a)
            for a in (
                "none",
                "dose_reduced",
                "drug_interrupted",
                "drug_withdrawn",
                "not_applicable",
            )
        ],
        *[
            body(outcome=o, end_date=today)
            for o in (
                "recovered",
                "recovering",
                "not_recovered",
                "recovered_with_sequelae",
                "unknown",
            )
        ],
    ]
    for payload in accepted:
        response = env.post(payload)
        assert response.status_code == 201, (payload, response.json)
        for key, value in payload.items():
            expected = value.strip() if key == "term" else value
            if key == "seriousness_criteria":
                order = [
                    "death",
                    "life_threatening",
                    "hospitalisation",
                    "disability",
                    "congenital_anomaly",
                    "other_important",
                ]
                expected = sorted(value, key=order.index)
            assert response.json[key] == expected, (key, payload)
    assert committed_counts()[0] == len(accepted)


def test_onset_today_is_the_sites_local_date(client, make_site, make_user, make_participant):
    """A site 14 hours ahead of UTC may report an onset that is tomorrow in UTC."""
    env = Env(client, make_site, make_user, make_participant, s01_timezone="Pacific/Kiritimati")
    local_today = site_today(get_site_by_code("S01"))
    assert env.post(body(onset_date=local_today.isoformat())).status_code == 201
    refused = env.post(body(onset_date=(local_today + timedelta(days=1)).isoformat()))
    assert refused.status_code == 422 and "onset_date" in refused.json["errors"]
    assert str(local_today) in refused.json["errors"]["onset_date"][0]


def test_unknown_or_foreign_participant_is_404_and_nothing_written(env):
    env.token("coordinator@S02")
    before = committed_counts()
    for pid, token in (
        ("S01-9999", "coordinator"),
        (env.other_pid, "coordinator"),
        (env.pid, env.s02),
    ):
        response = env.post(body(), pid=pid, token=token)
        assert response.status_code == 404, (pid, response.json)
        assert response.json["code"] == "not_found"
    assert committed_counts() == before


@pytest.mark.parametrize("role", ROLES)
def test_who_may_report_read_and_correct(env, role):
    site_staff = role in ("coordinator", "investigator")
    readers = site_staff or role in ("monitor", "data_manager")
    ae = env.create()
    assert env.post(body(), token=role).status_code == (201 if site_staff else 403)
    assert env.listing(token=role).status_code == (200 if readers else 403)
    assert env.get(ae["id"], token=role).status_code == (200 if readers else 403)
    uncoded = env.client.get("/api/v1/adverse-events/uncoded", headers=env.as_(role))
    assert uncoded.status_code == (200 if readers else 403)
    patched = env.patch(ae["id"], {"grade": 3, "reason": f"by {role}"}, token=role)
    assert patched.status_code == (200 if site_staff else 403)
    marked = env.in_error(ae["id"], token=role)
    assert marked.status_code == (200 if site_staff else 403)


# --- site isolation ---------------------------------------------------------------------


def test_another_sites_adverse_event_is_404_and_unchanged(env):
    ae = env.create(serious())
    env.token("coordinator@S02"), env.token("monitor@S02")
    before = committed_counts()
    for token in (env.s02, env.s02_monitor):
        assert env.get(ae["id"], token=token).status_code == 404
        assert env.listing(token=token).status_code == 404
        uncoded = env.client.get("/api/v1/adverse-events/uncoded", headers=bearer(token))
        assert uncoded.status_code == 200
    for response in (
        env.patch(ae["id"], {"grade": 4, "reason": "wrong site"}, token=env.s02),
        env.in_error(ae["id"], token=env.s02),
    ):
        assert response.status_code == 404, response.json
        assert response.json["message"] == f"No adverse_event {ae['id']}."
    # The 404 for a foreign AE reads exactly like the one for an AE that does not exist.
    missing = env.patch(999999, {"grade": 4, "reason": "x"}, token=env.s02)
    assert missing.status_code == 404 and missing.json["message"] == "No adverse_event 999999."
    assert committed_counts() == before
    assert env.get(ae["id"]).json == ae
    # Readers across sites see it.
    for role in ("monitor", "data_manager"):
        assert env.get(ae["id"], token=role).json == ae


def test_out_of_range_ids_are_404(env):
    for ae_id in (0, 2**31, 2**70):
        assert env.get(ae_id).status_code == 404
        assert env.patch(ae_id, {"grade": 1, "reason": "x"}).status_code == 404
        assert env.in_error(ae_id).status_code == 404


# --- corrections ------------------------------------------------------------------------


def test_correction_is_audited_with_old_new_and_reason(env):
    ae = env.create()
    response = env.patch(
        ae["id"],
        {
            "grade": 3,
            "end_date": date.today().isoformat(),
            "reason": "source document says grade 3",
        },
    )
    assert response.status_code == 200, response.json
    assert (response.json["grade"], response.json["version"]) == (3, 2)
    rows = audit_rows(ae["id"], "update")
    assert {(r.field, r.old_value, r.new_value, r.reason) for r in rows} == {
        ("grade", "2", "3", "source document says grade 3"),
        ("end_date", None, json.dumps(date.today().isoformat()), "source document says grade 3"),
    }
    # Back to empty is recorded too.
    env.patch(ae["id"], {"end_date": None, "reason": "end date was a typo"})
    last = audit_rows(ae["id"], "update")[-1]
    assert (last.field, last.new_value, last.reason) == ("end_date", None, "end date was a typo")


@pytest.mark.parametrize(
    "payload", [{"grade": 3}, {"grade": 3, "reason": ""}, {"grade": 3, "reason": "   "}]
)
def test_correction_needs_a_reason(env, payload):
    ae = env.create()
    before = committed_counts()
    response = env.patch(ae["id"], payload)
    assert response.status_code == 422 and "reason" in response.json["errors"]
    assert committed_counts() == before and env.get(ae["id"]).json == ae


def test_correction_revalidates_the_whole_record(env):
    ae = env.create(serious())
    before = committed_counts()
    cases = [
        ({"serious": False}, "seriousness_criteria"),  # criteria left behind
        ({"outcome": "fatal"}, "grade"),
        ({"grade": 5}, "outcome"),
        ({"end_date": (date.today() - timedelta(days=30)).isoformat()}, "end_date"),
        ({"onset_date": (date.today() + timedelta(days=1)).isoformat()}, "onset_date"),
        ({"term": " "}, "term"),
        ({"arm": "B"}, "arm"),
    ]
    for change, field in cases:
        response = env.patch(ae["id"], {**change, "reason": "try"})
        assert response.status_code == 422, (change, response.json)
        assert field in response.json["errors"], (change, response.json)
    assert committed_counts() == before
    ok = env.patch(ae["id"], {"serious": False, "seriousness_criteria": [], "reason": "not SAE"})
    assert ok.status_code == 200 and ok.json["serious"] is False
    fields = {r.field for r in audit_rows(ae["id"], "update")}
    assert fields == {"serious", "criterion_hospitalisation"}


def test_changing_the_term_codes_it_again(env):
    ae = env.create(body(term="headache"))
    assert ae["preferred_term"] == "Headache"
    nausea = env.patch(ae["id"], {"term": "Feeling sick", "reason": "verbatim corrected"}).json
    assert (nausea["preferred_term"], nausea["system_organ_class"]) == (
        "Nausea",
        "Gastrointestinal disorders",
    )
    unknown = env.patch(ae["id"], {"term": "zorblax syndrome", "reason": "clarified"}).json
    assert (unknown["preferred_term"], unknown["system_organ_class"], unknown["coded"]) == (
        None,
        None,
        False,
    )
    assert unknown["coding_source"] == "uncoded"
    changes = [(r.field, r.old_value, r.new_value) for r in audit_rows(ae["id"], "update")]
    assert ("preferred_term", '"Headache"', '"Nausea"') in changes
    assert ("preferred_term", '"Nausea"', None) in changes
    assert ("coding_source", '"builtin"', '"uncoded"') in changes
    # Unchanged term: no re-coding, nothing recorded for coding fields.
    env.patch(ae["id"], {"grade": 1, "reason": "grade"})
    assert audit_rows(ae["id"], "update")[-1].field == "grade"


def test_a_correction_that_changes_nothing_records_nothing(env):
    ae = env.create()
    before = committed_counts()
    response = env.patch(ae["id"], {"grade": 2, "reason": "checked"})
    assert response.status_code == 422 and response.json["code"] == "no_change", response.json
    assert committed_counts() == before


# --- entered in error -------------------------------------------------------------------


def test_entered_in_error_is_kept_audited_and_left_out(env):
    keep = env.create(body(term="nausea"))
    wrong = env.create(body(term="zorblax"))
    assert env.in_error(wrong["id"], reason=None).status_code == 422
    assert env.in_error(wrong["id"], reason="  ").status_code == 422
    marked = env.in_error(wrong["id"], reason="entered for the wrong participant")
    assert marked.status_code == 200
    assert marked.json["entered_in_error"] is True
    assert marked.json["error_reason"] == "entered for the wrong participant"
    row = audit_rows(wrong["id"], "entered_in_error")[0]
    assert (row.field, row.reason) == ("entered_in_error", "entered for the wrong participant")

    assert [ae["id"] for ae in env.listing().json] == [keep["id"]]
    everything = env.listing(query="?include_entered_in_error=true").json
    assert [ae["id"] for ae in everything] == [keep["id"], wrong["id"]]
    uncoded = env.client.get("/api/v1/adverse-events/uncoded", headers=env.as_("data_manager"))
    assert wrong["id"] not in [ae["id"] for ae in uncoded.json]
    assert env.get(wrong["id"]).json["entered_in_error"] is True  # still readable by id
    # Marked once; no more changes.
    assert env.in_error(wrong["id"]).status_code == 409
    assert env.patch(wrong["id"], {"grade": 1, "reason": "x"}).status_code == 409


# --- treatment-emergent -----------------------------------------------------------------


def test_treatment_emergent_is_derived_from_the_first_dose(env, monkeypatch):
    first_dose = date.today() - timedelta(days=5)
    before = env.create(body(onset_date=(first_dose - timedelta(days=1)).isoformat()))
    same_day = env.create(body(onset_date=first_dose.isoformat()))
    after = env.create(body(onset_date=(first_dose + timedelta(days=2)).isoformat()))
    assert not any(ae["treatment_emergent"] for ae in (before, same_day, after))

    monkeypatch.setattr(services, "first_dose_date", lambda participant: first_dose)
    listed = {ae["id"]: ae["treatment_emergent"] for ae in env.listing().json}
    assert listed == {before["id"]: False, same_day["id"]: True, after["id"]: True}
    assert env.get(after["id"]).json["treatment_emergent"] is True
    # Recorded later or corrected, the first dose changes the derivation at once.
    monkeypatch.setattr(services, "first_dose_date", lambda participant: date.today())
    assert not any(ae["treatment_emergent"] for ae in env.listing().json)


def test_treatment_emergent_follows_the_dose_recorded_through_the_api(
    client, make_site, make_user, make_participant
):
    """With the dosing module installed, the first dose it records drives the derivation."""
    from randomization import lists

    make_site("S01", planned_enrollment=4)
    env = Env(client, make_site, make_user, make_participant)
    lists.generate(make_user("unblinded_statistician")[0])
    db.session.commit()
    make_ready_for_randomization(client, env.as_("coordinator"), env.pid)
    randomized = client.post(
        f"/api/v1/participants/{env.pid}/randomize",
        headers=env.as_("coordinator"),
        json={"eligibility_confirmed": True},
    )
    assert randomized.status_code == 201, randomized.json
    today = date.today()
    earlier = env.create(body(onset_date=(today - timedelta(days=1)).isoformat()))
    same_day = env.create(body(onset_date=today.isoformat()))
    assert not earlier["treatment_emergent"] and not same_day["treatment_emergent"]
    dosed = client.post(
        f"/api/v1/participants/{env.pid}/dosing",
        headers=env.as_("coordinator"),
        json={"date": today.isoformat(), "tablets_per_day": 3},
    )
    assert dosed.status_code == 201, dosed.json
    listed = {ae["id"]: ae["treatment_emergent"] for ae in env.listing().json}
    assert listed == {earlier["id"]: False, same_day["id"]: True}


# Every output that decides treatment-emergence or the safety population, with the names it
# decides by; each must be the one definition in trial.safety.definitions.
DEFINITION_USERS = {
    "trial.safety.services": ("is_treatment_emergent",),
    "exports.tables.records": ("is_treatment_emergent",),
    "exports.tables.participants": ("in_safety_population",),
    "reports.counting": ("is_treatment_emergent", "in_safety_population"),
    "reports.listings": ("is_treatment_emergent",),
    "reports.liver": ("is_treatment_emergent",),
}
PROJECT = Path(__file__).parents[1]


def _names_in(node) -> set[str]:
    """The names, attributes and string keys ``node`` mentions."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            names.add(n.value)
    return names


def rules_written_out(source: str) -> list[str]:
    """Where ``source`` writes either rule itself: an onset compared with a first dose
    (treatment-emergence), or randomization and a first dose tested together (the safety
    population)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            names = _names_in(node)
            if any("onset" in n for n in names) and any("first_dose" in n for n in names):
                found.append(f"line {node.lineno}: treatment-emergence")
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            names = _names_in(node)
            if any("randomi" in n for n in names) and any("first_dose" in n for n in names):
                found.append(f"line {node.lineno}: safety population")
    return found


def test_treatment_emergence_and_the_safety_population_are_defined_once():
    """The AE API, the bundle and the DSMB reports decide with trial.safety.definitions, and
    no other module of the service writes either rule out again."""
    import importlib

    from trial.safety import definitions

    for module, names in DEFINITION_USERS.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is getattr(definitions, name)
    home = PROJECT / "trial" / "safety" / "definitions.py"
    written = {
        str(path.relative_to(PROJECT)): found
        for package in ("trial", "exports", "reports", "randomization")
        for path in sorted((PROJECT / package).rglob("*.py"))
        if path != home and (found := rules_written_out(path.read_text()))
    }
    assert written == {}
    assert rules_written_out(home.read_text())  # the home itself is found by the same search


@pytest.mark.parametrize(
    "copy",
    [
        # the bundle's own copies before issue 27
        "(first_dose is not None and onset >= first_dose for onset in group['onset_date'])",
        "(p.randomization_number is not None and p.first_dose_date is not None for p in g)",
        # the report's enrollment table's
        "sum(1 for p in people if p.randomized_on is not None and p.first_dose)",
    ],
)
def test_control_a_copy_of_either_rule_is_found(copy):
    assert rules_written_out(copy)


# --- expedited reports ------------------------------------------------------------------


def reports(env, role="dsmb", query=""):
    response = env.client.get(f"/api/v1/expedited-reports{query}", headers=env.as_(role))
    assert response.status_code == 200, response.json
    return response.json


def test_serious_event_opens_one_expedited_report_due_in_24_hours(env):
    env.create(body())  # not serious: no report
    ae = env.create(serious(awareness_date=date.today().isoformat()))
    (report,) = reports(env)
    assert (report["adverse_event_id"], report["status"], report["overdue"]) == (
        ae["id"],
        "open",
        False,
    )
    row = db.session.get(ExpeditedReport, report["id"])
    # Due at 00:00 (the site is on UTC) two days after the awareness date (here the onset's).
    awareness = date.fromisoformat(ae["awareness_date"])
    assert row.due_at.isoformat() == f"{awareness + timedelta(days=2)}T00:00:00+00:00"
    assert report["participant_id"] == env.pid and report["seriousness_criteria"] == [
        "hospitalisation"
    ]
    assert reports(env, "unblinded_statistician") == [report]
    created = select(AuditEvent).where(AuditEvent.entity_type == "expedited_report")
    assert {r.field for r in db.session.scalars(created)} == {
        "adverse_event_id",
        "due_at",
        "status",
    }


@pytest.mark.parametrize("role", ["admin", "statistician"])
def test_expedited_reports_are_refused_to_other_roles(env, role):
    env.create(serious())
    response = env.client.get("/api/v1/expedited-reports", headers=env.as_(role))
    assert response.status_code == 403
    assert "adverse" not in response.get_data(as_text=True).lower()


def test_event_made_serious_later_gets_one_report_kept_in_step(env):
    ae = env.create(body())
    assert reports(env) == []
    made_serious = {
        "serious": True,
        "seriousness_criteria": ["other_important"],
        "grade": 3,
        "awareness_date": ae["onset_date"],
    }
    assert env.patch(ae["id"], {**made_serious, "reason": "admitted"}).status_code == 200
    (first,) = reports(env)
    # Another change to a serious event does not open a second report.
    env.patch(ae["id"], {"seriousness_criteria": ["hospitalisation"], "reason": "admitted"})
    assert [r["id"] for r in reports(env)] == [first["id"]]
    # Downgraded: withdrawn; serious again: the same report reopens with its deadline.
    env.patch(ae["id"], {"serious": False, "seriousness_criteria": [], "reason": "not admitted"})
    (withdrawn,) = reports(env)
    assert withdrawn["status"] == "withdrawn"
    assert reports(env, query="?status=open") == []
    env.patch(ae["id"], {**made_serious, "reason": "admitted after all"})
    (reopened,) = reports(env)
    assert (reopened["id"], reopened["status"], reopened["due_at"]) == (
        first["id"],
        "open",
        first["due_at"],
    )
    status_changes = db.session.scalars(
        select(AuditEvent.reason).where(
            AuditEvent.entity_type == "expedited_report",
            AuditEvent.field == "status",
            AuditEvent.action == "update",
        )
    ).all()
    assert status_changes == ["not admitted", "admitted after all"]
    # Entered in error: withdrawn with the reason.
    env.in_error(ae["id"], reason="wrong participant")
    assert reports(env)[0]["status"] == "withdrawn"


# --- blinding ---------------------------------------------------------------------------


def test_no_arm_appears_in_any_adverse_event_output(client, make_site, make_user, make_participant):
    from randomization import lists
    from randomization import outputs as randomization_outputs

    make_site("S01", planned_enrollment=10)
    env = Env(client, make_site, make_user, make_participant)
    unblinded_user, _ = make_user("unblinded_statistician")
    lists.generate(unblinded_user)
    db.session.commit()
    consent = env.consent.isoformat()
    pids = [
        make_participant(site="S01", sex=sex, consent_date=consent)["participant_id"]
        for sex in "FFFFMMMM"
    ]
    ae_ids = []
    for pid in pids:
        make_ready_for_randomization(client, env.as_("coordinator"), pid)
        randomized = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=env.as_("coordinator"),
            json={"eligibility_confirmed": True},
        )
        assert randomized.status_code == 201, randomized.json
        ae_ids.append(env.create(body(term="sedation"), pid=pid)["id"])
        ae_ids.append(env.create(fatal(term="overdose"), pid=pid)["id"])
    arms = {arm for _, _, arm in randomization_outputs.allocation_key(unblinded_user)}
    db.session.rollback()
    assert arms == set(ARM_LABELS), "both arms must be represented for the check to bite"
    env.patch(ae_ids[0], {"grade": 3, "reason": "re-graded"})
    env.in_error(ae_ids[1], reason="duplicate")

    outputs = []
    for role in ROLES:
        headers = env.as_(role)
        for pid in pids:
            outputs.append(
                client.get(
                    f"/api/v1/participants/{pid}/adverse-events?include_entered_in_error=true",
                    headers=headers,
                )
            )
        outputs += [client.get(f"/api/v1/adverse-events/{i}", headers=headers) for i in ae_ids]
        outputs.append(client.get("/api/v1/adverse-events/uncoded", headers=headers))
        outputs.append(client.get("/api/v1/expedited-reports", headers=headers))
        outputs.append(
            client.get("/api/v1/audit?entity_type=adverse_event&limit=1000", headers=headers)
        )
        outputs.append(
            client.get("/api/v1/audit?entity_type=expedited_report&limit=1000", headers=headers)
        )
    assert sum(r.status_code == 200 for r in outputs) > 100
    for response in outputs:
        text = (str(response.headers) + response.get_data(as_text=True)).lower()
        assert not [label for label in ARM_LABELS if label in text], response.request.path
