"""MedDRA coding: the built-in dictionary, case and spacing variants, uncoded terms listed for
coding, and ``flask meddra load`` with good and bad sponsor files.

The built-in file is read here with the csv module, independently of the product's parser,
and the adverse events of special interest are written out with their expected primary SOC.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.safety.meddra import SYSTEM_ORGAN_CLASSES, code_term
from trial.safety.models import AdverseEvent, MeddraTerm

BUILTIN = Path(__file__).parents[1] / "trial" / "safety" / "meddra_terms.csv"
# Baclofen's known effects and the DSMB's events of special interest, with the primary SOC.
SPECIAL_INTEREST = {
    "Somnolence": "Nervous system disorders",
    "Sedation": "Nervous system disorders",
    "Dizziness": "Nervous system disorders",
    "Fatigue": "General disorders and administration site conditions",
    "Insomnia": "Psychiatric disorders",
    "Paraesthesia": "Nervous system disorders",
    "Dry mouth": "Gastrointestinal disorders",
    "Nausea": "Gastrointestinal disorders",
    "Headache": "Nervous system disorders",
    "Confusional state": "Psychiatric disorders",
    "Fall": "Injury, poisoning and procedural complications",
    "Seizure": "Nervous system disorders",
    "Depression": "Psychiatric disorders",
    "Suicidal ideation": "Psychiatric disorders",
    "Mania": "Psychiatric disorders",
    "Overdose": "Injury, poisoning and procedural complications",
    "Alcohol withdrawal syndrome": "Psychiatric disorders",
}
SYNONYMS = {
    "drowsiness": "Somnolence",
    "tiredness": "Fatigue",
    "pins and needles": "Paraesthesia",
    "xerostomia": "Dry mouth",
    "confusion": "Confusional state",
    "convulsion": "Seizure",
    "suicidal thoughts": "Suicidal ideation",
    "lightheadedness": "Dizziness",
}


def builtin_rows() -> list[dict]:
    with BUILTIN.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def variants(term: str) -> list[str]:
    spaced = "  ".join(term.split(" "))
    return [
        term,
        term.upper(),
        term.lower(),
        term.title(),
        f"  {term}\t",
        spaced,
        "\t".join(term.split(" ")),
        "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(term)),
    ]


def test_builtin_dictionary_is_large_standard_and_self_consistent():
    rows = builtin_rows()
    assert list(rows[0]) == ["term", "pt", "soc"]
    preferred = {row["pt"]: row["soc"] for row in rows}
    assert len(preferred) >= 150, len(preferred)
    assert set(preferred.values()) <= set(SYSTEM_ORGAN_CLASSES)
    assert len(SYSTEM_ORGAN_CLASSES) == len(set(SYSTEM_ORGAN_CLASSES)) == 27
    for pt, soc in SPECIAL_INTEREST.items():
        assert preferred.get(pt) == soc, pt
    # Every PT is listed as a term of its own, and each PT has one SOC throughout.
    own_rows = {row["pt"] for row in rows if row["term"] == row["pt"]}
    assert own_rows == set(preferred)
    for row in rows:
        assert preferred[row["pt"]] == row["soc"], row
    # Standard MedDRA (British) spelling for the PTs, synonyms may be American.
    for american in ("Paresthesia", "Diarrhea", "Edema peripheral", "Anemia", "Dyspnea"):
        assert american not in preferred
    keys = [" ".join(row["term"].split()).casefold() for row in rows]
    assert len(keys) == len(set(keys)), "a term is listed twice"
    print(f"\nbuilt-in dictionary: {len(preferred)} preferred terms, {len(rows)} terms")


def test_every_builtin_term_codes_to_its_soc_whatever_the_case_and_spacing(app):
    rows = builtin_rows()
    failures = []
    for row in rows:
        for variant in variants(row["term"]):
            coding = code_term(variant)
            got = (coding.preferred_term, coding.system_organ_class, coding.source)
            if got != (row["pt"], row["soc"], "builtin"):
                failures.append(f"{variant!r}: {got}")
    assert not failures, "\n".join(failures[:20])
    for verbatim, pt in SYNONYMS.items():
        assert code_term(verbatim).preferred_term == pt


@pytest.mark.parametrize(
    "term",
    [
        "",
        "   ",
        "zorblax syndrome",
        "somnolence somnolence",
        "somno lence",
        "drowsy feeling in toes",
    ],
)
def test_unknown_terms_stay_uncoded(app, term):
    coding = code_term(term)
    assert (coding.preferred_term, coding.system_organ_class, coding.source) == (
        None,
        None,
        "uncoded",
    )


# --- through the API ----------------------------------------------------------------------


def ae_body(term: str) -> dict:
    return {
        "term": term,
        "onset_date": (date.today() - timedelta(days=3)).isoformat(),
        "grade": 1,
        "serious": False,
        "relatedness": "unlikely",
        "action_taken": "none",
        "outcome": "recovered",
        "end_date": (date.today() - timedelta(days=1)).isoformat(),
    }


@pytest.fixture
def site_env(client, make_user, make_participant):
    consent = (date.today() - timedelta(days=30)).isoformat()
    pids = {
        site: make_participant(site=site, consent_date=consent)["participant_id"]
        for site in ("S01", "S02")
    }
    tokens = {
        "S01": make_user("coordinator", sites=["S01"])[1],
        "S02": make_user("coordinator", sites=["S02"])[1],
        "monitor S01": make_user("monitor", sites=["S01"])[1],
        "data_manager": make_user("data_manager")[1],
    }

    def report(term: str, site: str = "S01") -> dict:
        response = client.post(
            f"/api/v1/participants/{pids[site]}/adverse-events",
            headers=bearer(tokens[site]),
            json=ae_body(term),
        )
        assert response.status_code == 201, response.json
        return response.json

    def uncoded(who: str) -> list[int]:
        response = client.get("/api/v1/adverse-events/uncoded", headers=bearer(tokens[who]))
        assert response.status_code == 200
        return [ae["id"] for ae in response.json]

    return report, uncoded, tokens


def test_api_codes_variants_alike_and_lists_unknown_terms(client, site_env):
    report, uncoded, tokens = site_env
    codings = {
        (ae["preferred_term"], ae["system_organ_class"], ae["coded"])
        for ae in (report(v) for v in ("Dry mouth", "DRY  MOUTH", " dry\tmouth ", "Xerostomia"))
    }
    assert codings == {("Dry mouth", "Gastrointestinal disorders", True)}

    s01 = report("zorblax syndrome")
    s02 = report("Feeling of glass legs", site="S02")
    for ae in (s01, s02):
        assert (ae["preferred_term"], ae["system_organ_class"], ae["coded"]) == (None, None, False)
        assert ae["coding_source"] == "uncoded"
    assert uncoded("S01") == [s01["id"]]
    assert uncoded("S02") == [s02["id"]]
    assert uncoded("monitor S01") == [s01["id"]]
    assert uncoded("data_manager") == [s01["id"], s02["id"]]
    # Coded by a correction of the verbatim, it leaves the list.
    fixed = client.patch(
        f"/api/v1/adverse-events/{s01['id']}",
        headers=bearer(tokens["S01"]),
        json={"term": "Sedation", "reason": "clarified with the site"},
    )
    assert fixed.status_code == 200 and fixed.json["preferred_term"] == "Sedation"
    assert uncoded("data_manager") == [s02["id"]]


# --- flask meddra load ----------------------------------------------------------------------


def write(tmp_path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(runner, path: Path, *options):
    result = runner.invoke(args=["meddra", "load", str(path), *options])
    return result, result.output + (result.stderr if result.stderr_bytes else "")


def table_count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


GOOD = (
    "\ufeffLLT,llt_code,PT,SOC\n"
    "Zorblax syndrome,1,Somnolence,Nervous system disorders\n"
    "Tiredness,2,Asthenia,general disorders and administration site conditions\n"
    "Glass legs,3,Paraesthesia,Nervous system disorders\n"
    "\n"
    "Sedation,4,Sedation,Nervous system disorders\n"
)


def test_load_a_sponsor_dictionary_recodes_uncoded_events_audited(app, runner, site_env, tmp_path):
    report, uncoded, _ = site_env
    zorblax = report("zorblax  SYNDROME")
    still_unknown = report("quux")
    tired = report("tiredness")
    assert tired["preferred_term"] == "Fatigue"  # built-in

    result, output = load(runner, write(tmp_path, "meddra_27_1.csv", GOOD))
    assert result.exit_code == 0, output
    assert "coded 1 previously uncoded adverse events; 1 remain uncoded" in output
    assert "1 adverse events coded before would code differently" in output

    # The sponsor's dictionary wins over the built-in one, for new events...
    assert code_term("tiredness").preferred_term == "Asthenia"
    assert code_term("TIREDNESS").source == "sponsor"
    assert code_term("asthenia").system_organ_class == (
        "General disorders and administration site conditions"
    )  # a PT codes to itself, SOC in standard spelling
    assert code_term("headache").source == "builtin"  # the built-in one still backs it up
    assert report("Glass  legs")["preferred_term"] == "Paraesthesia"
    # ...the uncoded event was coded, as an audited correction naming the file...
    row = db.session.get(AdverseEvent, zorblax["id"])
    assert (row.preferred_term, row.coding_source, row.version) == ("Somnolence", "sponsor", 2)
    changes = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "adverse_event",
            AuditEvent.entity_id == str(zorblax["id"]),
            AuditEvent.action == "update",
        )
    ).all()
    assert {c.field for c in changes} == {"preferred_term", "system_organ_class", "coding_source"}
    assert all(
        c.reason.startswith("MedDRA dictionary loaded from meddra_27_1.csv") for c in changes
    )
    assert all(c.username.startswith("cli") and c.role == "system" for c in changes)
    # ...the event coded before kept its coding, and the load itself is in the trail.
    assert db.session.get(AdverseEvent, tired["id"]).preferred_term == "Fatigue"
    assert uncoded("data_manager") == [still_unknown["id"]]
    (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "meddra_load"))
    detail = json.loads(event.detail)
    assert (detail["file"], detail["terms"], detail["replaced_terms"]) == ("meddra_27_1.csv", 7, 0)
    assert len(detail["sha256"]) == 64

    # --recode-coded re-codes the built-in coding too, audited; a new load replaces the old.
    second = "term,pt,soc\nTiredness,Fatigue,General disorders and administration site conditions\n"
    result, output = load(runner, write(tmp_path, "v2.csv", second))
    assert result.exit_code == 0, output
    assert table_count(MeddraTerm) == 2  # tiredness and fatigue; the first load is gone
    assert code_term("zorblax syndrome").source == "uncoded"
    assert db.session.get(AdverseEvent, zorblax["id"]).preferred_term == "Somnolence"  # kept
    third = "term,pt,soc\nTiredness,Asthenia,General disorders and administration site conditions\n"
    result, output = load(runner, write(tmp_path, "v3.csv", third), "--recode-coded")
    assert result.exit_code == 0, output
    assert "re-coded 1 adverse events coded before" in output
    recoded = db.session.get(AdverseEvent, tired["id"])
    assert (recoded.preferred_term, recoded.coding_source) == ("Asthenia", "sponsor")


BAD_FILES = {
    "no soc column": ("term,pt\nNausea,Nausea\n", ["line 1", "'soc'"]),
    "llt and term both": (
        "llt,term,pt,soc\na,b,Nausea,Gastrointestinal disorders\n",
        ["line 1", "llt (or term)"],
    ),
    "empty pt": (
        "term,pt,soc\nNausea,Nausea,Gastrointestinal disorders\nSick,,Gastrointestinal disorders\n",
        ["line 3: pt is empty"],
    ),
    "unknown soc": (
        "term,pt,soc\nNausea,Nausea,Stomach problems\n",
        ["line 2: 'Stomach problems' is not a MedDRA system organ class"],
    ),
    "term to two PTs": (
        "term,pt,soc\nSick,Nausea,Gastrointestinal disorders\n"
        "Dizzy,Dizziness,Nervous system disorders\n"
        "SICK,Vomiting,Gastrointestinal disorders\n",
        ["line 4: term 'SICK' maps to 'Vomiting' here but to 'Nausea' on line 2"],
    ),
    "PT with two SOCs": (
        "term,pt,soc\nNausea,Nausea,Gastrointestinal disorders\n"
        "Queasy,Nausea,Nervous system disorders\n",
        ["line 3: PT 'Nausea'", "on line 2"],
    ),
    "wrong field count": (
        "term,pt,soc\nNausea,Nausea,Gastrointestinal disorders,extra\n",
        ["line 2: expected 3 fields"],
    ),
    "not utf-8": (
        b"term,pt,soc\nN\xe4usea,Nausea,Gastrointestinal disorders\n",
        ["line 2: not UTF-8"],
    ),
    "empty file": ("", ["line 1: the file is empty"]),
    "header only": ("term,pt,soc\n", ["no terms"]),
    "term too long": (
        "term,pt,soc\n" + "x" * 201 + ",Nausea,Gastrointestinal disorders\n",
        ["line 2: term is longer than 200"],
    ),
    "several problems": (
        "term,pt,soc\nNausea,Nausea,Gastrointestinal disorders\n,Fall,"
        "Injury, poisoning and procedural complications\n"
        "Fall,Fall,Falls\n",
        ["line 3:", "line 4: 'Falls'"],
    ),
}


def test_bad_files_are_refused_whole_naming_the_line(app, runner, site_env, tmp_path):
    report, uncoded, _ = site_env
    unknown = report("queasy")
    assert load(runner, write(tmp_path, "good.csv", GOOD))[0].exit_code == 0
    before = (table_count(MeddraTerm), table_count(AuditEvent), table_count(AdverseEvent))
    failures = []
    for name, (content, expected) in BAD_FILES.items():
        result, output = load(runner, write(tmp_path, "bad.csv", content))
        if result.exit_code == 0 or not all(text in output for text in expected):
            failures.append(f"{name}: exit {result.exit_code}\n{output}")
        elif "nothing was loaded" not in output:
            failures.append(f"{name}: does not say nothing was loaded\n{output}")
    assert not failures, "\n\n".join(failures)
    # Nothing changed: the previous dictionary, the trail and the events are as they were.
    assert (table_count(MeddraTerm), table_count(AuditEvent), table_count(AdverseEvent)) == before
    assert code_term("zorblax syndrome").source == "sponsor"
    assert uncoded("data_manager") == [unknown["id"]]
    missing = runner.invoke(args=["meddra", "load", str(tmp_path / "absent.csv")])
    assert missing.exit_code != 0
