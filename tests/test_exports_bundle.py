"""The blinded bundle: complete, reproducible, right at its cut-off, marked when dummy, audited.

Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pyreadstat
import pytest
from sqlalchemy import select

from exports.formats import csv_cell
from tests.capture_helpers import Trial, iso, today, vitals
from tests.conftest import bearer
from tests.test_access_policy import ROLES as ALL_ROLES
from tests.test_adverse_events import body as ae_body
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.forms.models import BlindingAssessment
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.visits.models import Visit

ROLES_ALLOWED = {"statistician", "unblinded_statistician", "data_manager"}


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def table(files: dict[str, bytes], name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(files[name].decode("utf-8"), newline="")))


def export(runner, tmp_path, *options, user="statistician", name="bundle.zip") -> bytes:
    out = tmp_path / name
    result = runner.invoke(args=["exports", "blinded", "--as", user, "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def now_cutoff() -> str:
    """An instant just past every write so far (the clock moves on before the next one)."""
    instant = datetime.now(UTC)
    time.sleep(0.01)
    return instant.isoformat()


def add_demo_guesses(limit: int = 6) -> int:
    """Guesses at some of the demo's completed week-12 and end-of-treatment visits, when the
    demo recorded none itself (it does since its blinding assessment: then nothing is added),
    so the bundle's blinding file has rows either way. Written through the records service
    (audited as the API writes them): the participant's and the investigator's guess at each
    visit, cycling through every kind of answer. Returns the number of visits given guesses."""
    from trial.cli_support import system_actor
    from trial.records.services import create_record

    active = BlindingAssessment.entered_in_error.is_(False)
    if db.session.scalar(select(BlindingAssessment.id).where(active).limit(1)) is not None:
        return 0
    arms = current_protocol().arms
    answers = [(arms[0], "strongly"), (arms[-1], "somewhat"), ("dont_know", None)]
    visits = db.session.scalars(
        select(Visit)
        .where(
            Visit.visit_code.in_(("week_12", "end_of_treatment")),
            Visit.status == "completed",
            Visit.entered_in_error.is_(False),
        )
        .order_by(Visit.id)
        .limit(limit)
    ).all()
    for index, visit in enumerate(visits):
        participant = db.session.get(Participant, visit.participant_id)
        for offset, respondent in enumerate(("participant", "investigator")):
            guess, confidence = answers[(index + offset) % len(answers)]
            values = {"visit_id": visit.id, "respondent": respondent, "guess": guess}
            values["confidence"] = confidence
            create_record(system_actor(), BlindingAssessment, participant, values)
    db.session.commit()
    return len(visits)


@pytest.fixture
def demo(app, runner):
    result = runner.invoke(args=["trial", "demo", "--participants", "24", "--seed", "5"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    add_demo_guesses()
    db.session.remove()
    return app


@pytest.mark.parametrize("fmt", ["csv", "xpt", "parquet"])
def test_manifest_matches_the_files_and_a_cut_repeats_byte_for_byte(demo, runner, tmp_path, fmt):
    cutoff = now_cutoff()
    first = export(runner, tmp_path, "--cutoff", cutoff, "--format", fmt, name="a.zip")
    again = export(runner, tmp_path, "--cutoff", cutoff, "--format", fmt, name="b.zip")
    assert first == again

    files = members(first)
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["cutoff"] == datetime.fromisoformat(cutoff).isoformat().replace("+00:00", "Z")
    assert manifest["format"] == fmt and manifest["software"]["version"]
    assert {f["name"] for f in manifest["files"]} == set(files)
    for entry in manifest["files"]:
        content = files[entry["name"]]
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], entry["name"]
        assert rows_in(entry["name"], content) == entry["rows"], entry["name"]
    participants = next(f for f in manifest["files"] if f["name"].startswith("participants"))
    assert participants["rows"] == 24
    drinking = next(f for f in manifest["files"] if f["name"].startswith("drinking_calendar"))
    assert drinking["rows"] > 24 * 28


def rows_in(name: str, content: bytes) -> int:
    if name.endswith(".csv"):
        return len(list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))) - 1
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(content)).num_rows
    if name.endswith(".xpt"):
        return xpt_frame(content).shape[0]
    return len(content.decode("utf-8").splitlines())


def xpt_frame(content: bytes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "file.xpt"
        path.write_bytes(content)
        frame, _meta = pyreadstat.read_xport(str(path))
    return frame


def test_xpt_and_parquet_hold_the_csv_values_with_short_names_mapped(demo, runner, tmp_path):
    cutoff = now_cutoff()
    as_csv = members(export(runner, tmp_path, "--cutoff", cutoff, name="c.zip"))
    as_xpt = members(export(runner, tmp_path, "--cutoff", cutoff, "--format", "xpt", name="x.zip"))
    as_parquet = members(
        export(runner, tmp_path, "--cutoff", cutoff, "--format", "parquet", name="p.zip")
    )
    dictionary = table(as_xpt, "dictionary.csv")
    short = {
        (row["file"].rsplit(".", 1)[0], row["variable"]): row["short_name"] for row in dictionary
    }
    assert all(len(s) <= 8 for s in short.values())
    assert all(len(row["label"]) <= 40 for row in dictionary)

    for name in ("participants", "drinking_outcomes", "labs", "blinding_assessments"):
        expected = table(as_csv, f"{name}.csv")
        frame = xpt_frame(as_xpt[f"{name}.xpt"])
        parquet = pq.read_table(io.BytesIO(as_parquet[f"{name}.parquet"])).to_pylist()
        assert len(frame) == len(parquet) == len(expected)
        assert expected, name  # not vacuous
        for index, row in enumerate(expected):
            for variable, text in row.items():
                value = frame.iloc[index][short[(name, variable)]]
                assert same_value(text, value), (name, index, variable, text, value)
                assert csv_cell(parquet[index][variable]) == text, (name, variable)


def same_value(text: str, value) -> bool:
    """A CSV cell against the value pyreadstat read back from XPT."""
    import math

    import pandas as pd

    if text == "":
        return value == "" or value is None or bool(pd.isna(value))
    if text in ("true", "false"):
        return value == (1.0 if text == "true" else 0.0)
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10] == text
    if isinstance(value, float):
        return math.isclose(value, float(text))
    return str(value) == text.lstrip("'")


def test_the_cutoff_shows_each_record_as_it_stood_then(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    trial = Trial(client, make_site, make_user, make_participant)
    kept = trial.enrol(sex="F")
    later_randomized = trial.enrol(sex="M", day0_ago=None)
    visit = trial.visit(kept.pid, "baseline", kept.day0, vitals=vitals(systolic_bp=150))
    assert visit.status_code == 201, visit.json
    vitals_id = visit.json["vitals"]["id"]
    ae = trial.post(
        f"/participants/{kept.pid}/adverse-events",
        ae_body(onset_date=iso(today() - timedelta(days=3))),
    )
    assert ae.status_code == 201, ae.json
    cutoff = now_cutoff()

    # After the cut-off: a correction, a withdrawal, a randomization and a new participant.
    fixed = trial.patch(f"/vitals/{vitals_id}", {"systolic_bp": 128, "reason": "misread"})
    assert fixed.status_code == 200, fixed.json
    withdrawn = trial.post(
        f"/adverse-events/{ae.json['id']}/entered-in-error", {"reason": "wrong participant"}
    )
    assert withdrawn.status_code == 200, withdrawn.json
    randomized = trial.post(
        f"/participants/{later_randomized.pid}/randomize", {"eligibility_confirmed": True}
    )
    assert randomized.status_code == 201, randomized.json
    newcomer = trial.enrol(sex="F", day0_ago=None, screening=False)
    db.session.remove()
    make_user("statistician", username="stat")

    then = members(export(runner, tmp_path, "--cutoff", cutoff, user="stat", name="then.zip"))
    now = members(export(runner, tmp_path, user="stat", name="now.zip"))

    def by_pid(files, name):
        return {row["participant_id"]: row for row in table(files, name)}

    assert set(by_pid(then, "participants.csv")) == {kept.pid, later_randomized.pid}
    assert newcomer.pid in by_pid(now, "participants.csv")
    assert by_pid(then, "participants.csv")[later_randomized.pid]["randomization_number"] == ""
    assert (
        by_pid(now, "participants.csv")[later_randomized.pid]["randomization_number"]
        == (randomized.json["randomization_number"])
    )
    assert by_pid(then, "vitals.csv")[kept.pid]["systolic_bp"] == "150"
    assert by_pid(now, "vitals.csv")[kept.pid]["systolic_bp"] == "128"
    assert [r["preferred_term"] for r in table(then, "adverse_events.csv")] == ["Somnolence"]
    assert table(now, "adverse_events.csv") == []


WEEK_12 = timedelta(days=84)  # week 12's target day (window -5/+5)
GUESS_COLUMNS = [
    "participant_id",
    "site",
    "visit_code",
    "visit_date",
    "respondent",
    "guess",
    "confidence",
]


def answer(respondent: str, guess: str, confidence: str | None = None) -> dict:
    return {"respondent": respondent, "guess": guess, "confidence": confidence}


def test_guesses_are_in_every_format_as_they_stood_at_the_cut_off(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    """Guesses recorded through the API are in the blinding file of every format, one row
    each, participant before investigator; a guess entered in error is not, nor one recorded
    after the cut-off; a guess corrected or withdrawn after it is as it stood then."""
    trial = Trial(client, make_site, make_user, make_participant)
    first, second, late = (trial.enrol(day0_ago=90) for _ in range(3))
    assert sorted([first.pid, second.pid, late.pid]) == [first.pid, second.pid, late.pid]

    def week_12(p, *answers):
        response = trial.visit(p.pid, "week_12", p.day0 + WEEK_12, blinding=list(answers))
        assert response.status_code == 201, response.json
        return {g["respondent"]: g["id"] for g in response.json["blinding"]}

    # Sent investigator first: the file's order is the protocol's, not the order of entry.
    ids_first = week_12(
        first, answer("investigator", "dont_know"), answer("participant", "baclofen", "strongly")
    )
    ids_second = week_12(
        second,
        answer("participant", "placebo", "somewhat"),
        answer("investigator", "placebo", "strongly"),
    )
    withdrawn = trial.post(
        f"/blinding-assessments/{ids_second['investigator']}/entered-in-error",
        {"reason": "asked the wrong person", "version": 1},
    )
    assert withdrawn.status_code == 200, withdrawn.json
    cutoff = now_cutoff()

    # After the cut-off: a new visit with guesses, a correction and a withdrawal.
    ids_late = week_12(late, answer("participant", "placebo", "strongly"))
    fixed = trial.patch(
        f"/blinding-assessments/{ids_first['participant']}",
        {"guess": "dont_know", "confidence": None, "reason": "misheard", "version": 1},
    )
    assert fixed.status_code == 200, fixed.json
    gone = trial.post(
        f"/blinding-assessments/{ids_second['participant']}/entered-in-error",
        {"reason": "duplicate", "version": 1},
    )
    assert gone.status_code == 200, gone.json
    assert ids_late
    db.session.remove()
    make_user("statistician", username="stat")

    def exported(fmt, *options):
        data = export(runner, tmp_path, *options, "--format", fmt, user="stat", name=f"{fmt}.zip")
        return members(data)

    then = {fmt: exported(fmt, "--cutoff", cutoff) for fmt in ("csv", "xpt", "parquet")}
    now = exported("csv")

    def week(p):
        return iso(p.day0 + WEEK_12)

    expected_then = [
        [first.pid, "S01", "week_12", week(first), "participant", "baclofen", "strongly"],
        [first.pid, "S01", "week_12", week(first), "investigator", "dont_know", ""],
        [second.pid, "S01", "week_12", week(second), "participant", "placebo", "somewhat"],
    ]
    expected_now = [
        [first.pid, "S01", "week_12", week(first), "participant", "dont_know", ""],
        [first.pid, "S01", "week_12", week(first), "investigator", "dont_know", ""],
        [late.pid, "S01", "week_12", week(late), "participant", "placebo", "strongly"],
    ]

    def rows(files):
        lines = list(
            csv.reader(io.StringIO(files["blinding_assessments.csv"].decode(), newline=""))
        )
        assert lines[0] == GUESS_COLUMNS
        return lines[1:]

    assert rows(then["csv"]) == expected_then
    assert rows(now) == expected_now

    # The same rows in XPT (short names from the dictionary) and Parquet.
    dictionary = table(then["xpt"], "dictionary.csv")
    short = {
        r["variable"]: r["short_name"]
        for r in dictionary
        if r["file"] == "blinding_assessments.xpt"
    }
    assert list(short) == GUESS_COLUMNS
    frame = xpt_frame(then["xpt"]["blinding_assessments.xpt"])
    assert list(frame.columns) == [short[c] for c in GUESS_COLUMNS]
    parquet = pq.read_table(io.BytesIO(then["parquet"]["blinding_assessments.parquet"]))
    assert parquet.column_names == GUESS_COLUMNS
    as_parquet = parquet.to_pylist()
    assert len(frame) == len(as_parquet) == len(expected_then)
    for index, row in enumerate(expected_then):
        for column, text in zip(GUESS_COLUMNS, row, strict=True):
            value = frame.iloc[index][short[column]]
            assert same_value(text, value), (index, column, text, value)
            assert csv_cell(as_parquet[index][column]) == text, (index, column)
    assert str(parquet.schema.field("visit_date").type) == "date32[day]"

    # Each format's manifest counts the rows and hashes the file; the dictionary describes
    # every column with its allowed values.
    for fmt, files in then.items():
        manifest = json.loads(files["manifest.json"])
        (entry,) = [f for f in manifest["files"] if f["name"] == f"blinding_assessments.{fmt}"]
        assert entry["rows"] == len(expected_then), fmt
        content = files[entry["name"]]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest(), fmt
        described = {
            r["variable"]: r
            for r in table(files, "dictionary.csv")
            if r["file"] == f"blinding_assessments.{fmt}"
        }
        assert list(described) == GUESS_COLUMNS, fmt
        assert all(r["label"] and r["type"] for r in described.values())
        assert described["visit_date"]["type"] == "date"
        assert described["respondent"]["allowed_values"] == "participant, investigator"
        assert "dont_know" in described["guess"]["allowed_values"]
        assert described["confidence"]["allowed_values"].startswith("strongly, somewhat")
        text = files["README.txt"].decode()
        assert f"blinding_assessments.{fmt}" in text, fmt


def test_formula_cells_are_neutralised_and_numbers_left_alone(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    trial = Trial(client, make_site, make_user, make_participant)
    p = trial.enrol()
    for term in ('=HYPERLINK("http://evil")', "+cmd", "-x", "@SUM(A1)"):
        response = trial.post(
            f"/participants/{p.pid}/adverse-events",
            ae_body(term=term, onset_date=iso(today() - timedelta(days=3))),
        )
        assert response.status_code == 201, response.json
    make_user("data_manager", username="dm")
    files = members(export(runner, tmp_path, user="dm"))
    terms = sorted(r["term"] for r in table(files, "adverse_events.csv"))
    assert terms == ["'+cmd", "'-x", '\'=HYPERLINK("http://evil")', "'@SUM(A1)"]
    screening = [r for r in table(files, "visits.csv") if r["visit_code"] == "screening"]
    assert screening[0]["study_day"] == "-14"  # a negative number is data, not a formula
    assert csv_cell(-3) == "-3" and csv_cell("-3") == "'-3"


def test_dummy_arms_are_marked_as_dummy_everywhere(demo, runner, tmp_path):
    cutoff = now_cutoff()
    data = export(runner, tmp_path, "--cutoff", cutoff, "--dummy-arms", "7", name="d.zip")
    plain = members(export(runner, tmp_path, "--cutoff", cutoff, name="plain.zip"))
    files = members(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert b"DUMMY" in archive.comment
    assert "DUMMY" in files["DUMMY_ARMS_NOT_REAL.txt"].decode()
    manifest = json.loads(files["manifest.json"])
    assert manifest["dummy_arms"]["seed"] == 7 and manifest["dummy_arms"]["real"] is False
    assert json.loads(plain["manifest.json"])["dummy_arms"] is None
    entry = [r for r in table(files, "dictionary.csv") if r["variable"] == "dummy_arm_not_real"]
    assert "DUMMY" in entry[0]["label"] and "NOT" in entry[0]["label"]
    rows = table(files, "participants.csv")
    labels = {r["dummy_arm_not_real"] for r in rows if r["randomization_number"]}
    assert labels == {"DUMMY_A", "DUMMY_B"}
    assert all(r["dummy_arm_not_real"] == "" for r in rows if not r["randomization_number"])
    assert "dummy_arm_not_real" not in table(plain, "participants.csv")[0]
    # Same seed, same labels; the rest of the bundle is the plain one.
    assert members(export(runner, tmp_path, "--cutoff", cutoff, "--dummy-arms", "7")) == files
    assert files["visits.csv"] == plain["visits.csv"]


def test_every_pull_is_audited_with_the_bundle_hash(demo, client, make_user):
    _user, token = make_user("statistician", username="stat.http")
    cutoff = now_cutoff()
    response = client.get(
        "/api/v1/exports/blinded", query_string={"cutoff": cutoff}, headers=bearer(token)
    )
    assert response.status_code == 200, response.json
    assert response.mimetype == "application/zip"
    digest = hashlib.sha256(response.data).hexdigest()
    assert response.headers["X-Content-SHA256"] == digest
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "export_blinded")
    ).one()
    detail = json.loads(event.detail)
    assert event.username == "stat.http" and detail["sha256"] == digest
    assert detail["cutoff"] == json.loads(members(response.data)["manifest.json"])["cutoff"]
    assert detail["format"] == "csv" and detail["dummy_arms_seed"] is None


@pytest.mark.parametrize("role", ALL_ROLES)
def test_only_statisticians_and_data_managers_may_export(
    app, client, make_user, role, runner, tmp_path
):
    user, token = make_user(role, username=f"u.{role}")
    response = client.get("/api/v1/exports/blinded", headers=bearer(token))
    if role in ROLES_ALLOWED:
        assert response.status_code == 200, response.json
    else:
        assert response.status_code == 403, response.json
        assert response.json["code"] == "forbidden"
        out = tmp_path / "kept.zip"
        out.write_bytes(b"earlier file")
        cli = runner.invoke(args=["exports", "blinded", "--as", user.username, "--out", str(out)])
        assert cli.exit_code != 0
        assert out.read_bytes() == b"earlier file"  # a refusal never touches --out
    exported = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export_blinded"))
    assert len(list(exported)) == (1 if role in ROLES_ALLOWED else 0)


def test_bad_options_are_refused_naming_each_and_nothing_is_written(app, client, make_user):
    _user, token = make_user("statistician")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = [
        (
            {"format": "pdf", "cutoff": "yesterday", "dummy_arms": "-1"},
            {"format", "cutoff", "dummy_arms"},
        ),
        ({"cutoff": tomorrow}, {"cutoff"}),
        ({"cutoff": "2026-01-01T00:00:00"}, {"cutoff"}),  # no time zone
        ({"dummy_arms": "seven"}, {"dummy_arms"}),
        ({"unknown": "1"}, {"unknown"}),
    ]
    for query, fields in cases:
        response = client.get("/api/v1/exports/blinded", query_string=query, headers=bearer(token))
        assert response.status_code == 422, (query, response.json)
        assert set(response.json["errors"]) == fields, (query, response.json)
    assert (
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export_blinded")).all()
        == []
    )
