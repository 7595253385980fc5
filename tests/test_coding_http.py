"""Coding over HTTP: a data manager codes and re-codes verbatim terms with a reason, finds
terms in the loaded dictionaries, and the DSMB report's counting sees the coded term; the
built-in lay terms code to the right PT and SOC; a death-only verbatim is refused.

Every refusal is checked to name its field and to write nothing (AE, audit and expedited
report rows counted on the committed state). Both backends through the ``client`` fixture.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from reports import counting
from reports.data import load_safety_data
from tests.test_adverse_events import ROLES, Env, body, committed_counts, fatal, serious
from trial.audit.models import AuditEvent
from trial.cli_support import system_actor
from trial.database import utcnow
from trial.extensions import db
from trial.safety.coding import load_sponsor_dictionary
from trial.safety.meddra import code_term

INJURY = "Injury, poisoning and procedural complications"
NERVOUS = "Nervous system disorders"
GENERAL = "General disorders and administration site conditions"
UNKNOWN = "tripped over the dog"  # no dictionary codes it


@pytest.fixture
def env(client, make_site, make_user, make_participant) -> Env:
    made = Env(client, make_site, make_user, make_participant)
    made.token("data_manager")  # accounts are audited: made before anything is counted
    return made


def code(env, ae_id, payload, token="data_manager"):
    return env.client.post(
        f"/api/v1/adverse-events/{ae_id}/coding", headers=env.as_(token), json=payload
    )


def coding_audit(ae_id) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.entity_type == "adverse_event",
                AuditEvent.entity_id == str(ae_id),
                AuditEvent.action == "update",
            )
            .order_by(AuditEvent.seq)
        )
    )


# --- coding and re-coding ------------------------------------------------------------------


def test_data_manager_codes_an_uncoded_term_with_a_reason_audited(env):
    ae = env.create(body(term=UNKNOWN))
    assert (ae["coding_source"], ae["preferred_term"]) == ("uncoded", None)
    uncoded = env.client.get("/api/v1/adverse-events/uncoded", headers=env.as_("data_manager"))
    assert [row["id"] for row in uncoded.json] == [ae["id"]]

    response = code(env, ae["id"], {"preferred_term": "  fall ", "reason": "tripped: a fall"})
    assert response.status_code == 200, response.json
    coded = response.json
    # The dictionary's spelling and SOC; the verbatim is kept as the site wrote it.
    assert (coded["preferred_term"], coded["system_organ_class"]) == ("Fall", INJURY)
    assert (coded["coding_source"], coded["coded"], coded["term"]) == ("builtin", True, UNKNOWN)
    assert coded["version"] == ae["version"] + 1
    assert response.headers["ETag"] == f'"{coded["version"]}"'

    rows = coding_audit(ae["id"])
    assert {r.field: (r.old_value, json.loads(r.new_value)) for r in rows} == {
        "preferred_term": (None, "Fall"),
        "system_organ_class": (None, INJURY),
        "coding_source": ('"uncoded"', "builtin"),
    }
    assert {(r.reason, r.role, r.entity_site) for r in rows} == {
        ("tripped: a fall", "data_manager", "S01")
    }
    uncoded = env.client.get("/api/v1/adverse-events/uncoded", headers=env.as_("data_manager"))
    assert uncoded.json == []
    assert env.get(ae["id"]).json == coded


def test_recoding_needs_a_reason_and_without_one_writes_nothing(env):
    ae = env.create(body(term="sleepy"))
    assert ae["preferred_term"] == "Somnolence"
    before = committed_counts()
    for payload in (
        {"preferred_term": "Sedation"},
        {"preferred_term": "Sedation", "reason": "   "},
        {"preferred_term": "Sedation", "reason": "\u200b"},  # invisible only: no reason
    ):
        response = code(env, ae["id"], payload)
        assert response.status_code == 422, response.json
        assert set(response.json["errors"]) == {"reason"}, payload
        assert committed_counts() == before
    assert env.get(ae["id"]).json["preferred_term"] == "Somnolence"

    # Control: the same re-coding with a reason goes through, audited with the old value.
    response = code(env, ae["id"], {"preferred_term": "Sedation", "reason": "site clarified"})
    assert response.status_code == 200, response.json
    assert response.json["preferred_term"] == "Sedation"
    (pt_row,) = [r for r in coding_audit(ae["id"]) if r.field == "preferred_term"]
    assert (pt_row.old_value, pt_row.new_value, pt_row.reason) == (
        '"Somnolence"',
        '"Sedation"',
        "site clarified",
    )


def test_a_term_not_in_the_dictionary_is_refused_naming_the_field(env):
    ae = env.create(body(term=UNKNOWN))
    before = committed_counts()
    cases = {
        "Zorblax syndrome": "not a preferred term",
        "fell": "synonym of the preferred term 'Fall'",  # a synonym, not a PT
        "Nervous system disorders": "not a preferred term",  # an SOC
    }
    for term, message in cases.items():
        response = code(env, ae["id"], {"preferred_term": term, "reason": "coding"})
        assert response.status_code == 422, response.json
        assert list(response.json["errors"]) == ["preferred_term"]
        assert message in response.json["errors"]["preferred_term"][0]
    # Both kinds of error in one round: the schema's (no reason) and the rule's (the PT).
    response = code(env, ae["id"], {"preferred_term": "Zorblax syndrome"})
    assert set(response.json["errors"]) == {"preferred_term", "reason"}
    response = code(env, ae["id"], {"preferred_term": "Fall", "reason": "x", "soc": "Eye"})
    assert set(response.json["errors"]) == {"soc"}  # the SOC is the dictionary's, not sent
    assert committed_counts() == before


def test_refusals_404_409_no_change_and_stale_version(env):
    ae = env.create(body(term="dizzy"))
    before = committed_counts()
    missing = code(env, 999999, {"preferred_term": "Fall", "reason": "x"})
    assert missing.status_code == 404
    same = code(env, ae["id"], {"preferred_term": "dizziness", "reason": "x"})
    assert (same.status_code, same.json["code"]) == (422, "no_change")
    stale = code(env, ae["id"], {"preferred_term": "Vertigo", "reason": "x", "version": 9})
    assert stale.status_code == 412
    assert committed_counts() == before
    assert env.in_error(ae["id"]).status_code == 200
    before = committed_counts()
    gone = code(env, ae["id"], {"preferred_term": "Vertigo", "reason": "x"})
    assert gone.status_code == 409
    assert committed_counts() == before


@pytest.mark.parametrize("role", [r for r in ROLES if r != "data_manager"])
def test_only_the_data_manager_codes(env, role):
    ae = env.create(body(term=UNKNOWN))
    env.token(role)
    before = committed_counts()
    response = code(env, ae["id"], {"preferred_term": "Fall", "reason": "x"}, token=role)
    assert response.status_code == 403
    assert committed_counts() == before
    assert env.get(ae["id"]).json["coding_source"] == "uncoded"


# --- searching the dictionaries ------------------------------------------------------------


def search(env, query, token="coordinator"):
    return env.client.get(f"/api/v1/meddra/terms{query}", headers=env.as_(token))


def test_search_finds_preferred_terms_by_prefix_and_synonym(env):
    found = search(env, "?q=FELL%20down").json
    assert found[0] == {
        "preferred_term": "Fall",
        "system_organ_class": INJURY,
        "matched_term": "fell down",
        "source": "builtin",
    }
    # The PT itself first, then a synonym's match; one row per PT.
    falls = search(env, "?q=fal").json
    assert falls[0]["preferred_term"] == "Fall" and falls[0]["matched_term"] is None
    assert len({row["preferred_term"] for row in falls}) == len(falls)
    # A later word: "strange taste" -> Dysgeusia; "fog" -> the foggy feelings.
    taste = {row["preferred_term"]: row for row in search(env, "?q=taste").json}
    assert taste["Dysgeusia"]["system_organ_class"] == NERVOUS
    fog = {row["preferred_term"] for row in search(env, "?q=fog").json}
    assert {"Feeling abnormal", "Cognitive disorder"} <= fog
    assert len(search(env, "?q=s&limit=3").json) == 3
    assert search(env, "?q=zorblax").json == []
    # LIKE's wildcards are literal text.
    assert search(env, "?q=%25").json == search(env, "?q=_").json == []
    for role in ("investigator", "monitor", "data_manager"):
        assert search(env, "?q=fell", token=role).status_code == 200


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20", "?q=" + "a" * 101, "?q=a&limit=0"])
def test_search_refuses_a_missing_blank_or_long_query_naming_it(env, query):
    response = search(env, query)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == ({"limit"} if "limit" in query else {"q"})


@pytest.mark.parametrize("role", ["admin", "statistician", "unblinded_statistician", "dsmb"])
def test_search_is_for_the_roles_that_enter_or_code_events(env, role):
    assert search(env, "?q=fall", token=role).status_code == 403


def test_search_and_coding_use_the_sponsor_dictionary_first(env, tmp_path):
    path = tmp_path / "sponsor.csv"
    path.write_text(
        "llt,pt,soc\n"
        f'{UNKNOWN},Fall,"{INJURY}"\n'
        f'Fall from height,Fall from height,"{INJURY}"\n'
        f"Somnolence,Somnolence,{NERVOUS}\n",
        encoding="utf-8",
    )
    load_sponsor_dictionary(system_actor(), path)
    db.session.commit()
    rows = search(env, "?q=tripped").json
    assert rows == [
        {
            "preferred_term": "Fall",
            "system_organ_class": INJURY,
            "matched_term": UNKNOWN,
            "source": "sponsor",
        }
    ]
    assert [r["source"] for r in search(env, "?q=fall%20from").json] == ["sponsor"]
    # A built-in term the sponsor's file does not have is still found (coding falls back).
    assert search(env, "?q=dysgeusia").json[0]["source"] == "builtin"
    ae = env.create(body(term="felt funny"))
    coded = code(env, ae["id"], {"preferred_term": "fall from height", "reason": "per site"})
    assert coded.json["coding_source"] == "sponsor"
    assert coded.json["preferred_term"] == "Fall from height"


# --- the built-in lay terms ----------------------------------------------------------------

# Lay terms sites write for baclofen's known effects, with the PT and primary SOC they must
# code to (MedDRA: the LLT under its PT). "foggy" and its variants go to "Feeling abnormal"
# (General disorders), as MedDRA's LLT "Foggy feeling in head" does: the verbatim names a
# feeling, not a measured deficit, and "Disturbance in attention" (Nervous system) would claim
# a cognitive finding the site did not report. "Brain fog" is the exception: MedDRA files that
# LLT under "Cognitive disorder". A fall, however it happened, is the PT "Fall" in Injury,
# poisoning and procedural complications (its primary SOC), which the DSMB's falls row counts.
LAY_TERMS = {
    "sleepy": ("Somnolence", NERVOUS),
    "felt sleepy": ("Somnolence", NERVOUS),
    "drowsy": ("Somnolence", NERVOUS),
    "dozy": ("Somnolence", NERVOUS),
    "fell": ("Fall", INJURY),
    "fell down stairs": ("Fall", INJURY),
    "fell over": ("Fall", INJURY),
    "tripped and fell": ("Fall", INJURY),
    "strange taste": ("Dysgeusia", NERVOUS),
    "metallic taste": ("Dysgeusia", NERVOUS),
    "foggy": ("Feeling abnormal", GENERAL),
    "feeling foggy": ("Feeling abnormal", GENERAL),
    "brain fog": ("Cognitive disorder", NERVOUS),
    "dizzy": ("Dizziness", NERVOUS),
    "woozy": ("Dizziness", NERVOUS),
    "confused": ("Confusional state", "Psychiatric disorders"),
    "muddled": ("Confusional state", "Psychiatric disorders"),
    "disorientated": ("Disorientation", "Psychiatric disorders"),
    "felt drunk": ("Feeling drunk", GENERAL),
    "forgetful": ("Memory impairment", NERVOUS),
    "can't sleep": ("Insomnia", "Psychiatric disorders"),
    "threw up": ("Vomiting", "Gastrointestinal disorders"),
}


def test_lay_terms_code_to_their_preferred_term_and_primary_soc(app):
    failures = []
    for verbatim, expected in LAY_TERMS.items():
        for variant in (verbatim, verbatim.upper(), f"  {verbatim.title()} "):
            coding = code_term(variant)
            if (coding.preferred_term, coding.system_organ_class) != expected:
                failures.append(f"{variant!r}: {coding}")
    assert failures == []
    # Control: a lay term not in the list stays uncoded (for a data manager to code).
    assert code_term("heavy legs in the evening").source == "uncoded"


# --- death is an outcome -------------------------------------------------------------------


@pytest.mark.parametrize("term", ["Death", "died", " DEAD. ", "Passed  away", "deceased"])
def test_a_death_only_verbatim_is_refused_naming_the_term(env, term):
    before = committed_counts()
    response = env.post(fatal(term=term))
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == ["term"]
    assert "cause of death" in response.json["errors"]["term"][0]
    assert committed_counts() == before
    # Nor as a correction of another event's term.
    ae = env.create(fatal(term="Myocardial infarction"))
    before = committed_counts()
    patched = env.patch(ae["id"], {"term": term, "reason": "typo"})
    assert patched.status_code == 422 and list(patched.json["errors"]) == ["term"]
    assert committed_counts() == before


def test_the_cause_of_death_is_accepted(env):
    """Control: the same fatal event under its cause, or a sudden death, is recorded."""
    for term in ("Myocardial infarction", "Sudden death", "Death of a pet: grief"):
        ae = env.create(fatal(term=term))
        assert ae["outcome"] == "fatal"


# --- the DSMB report counts what was coded -------------------------------------------------


def falls_events() -> int:
    data = load_safety_data(utcnow())
    falls = {s[0].label: s[0] for s in counting.special_interest(data.adverse_events)}["Falls"]
    db.session.rollback()
    return sum(falls.events.values())


def test_the_falls_row_counts_coded_falls(env):
    onset = (date.today() - timedelta(days=3)).isoformat()
    stairs = env.create(serious(term="fell down stairs", onset_date=onset, grade=3))
    assert stairs["preferred_term"] == "Fall"  # the built-in dictionary codes it now
    dog = env.create(body(term=UNKNOWN, onset_date=onset))
    assert falls_events() == 1  # control: the uncoded fall is not counted yet
    assert code(env, dog["id"], {"preferred_term": "Fall", "reason": "a fall"}).status_code == 200
    assert falls_events() == 2
