"""The PDFs on a demo trial: text agrees with the engine, the open report is pooled, and the
same data and cut-off give the same bytes.

One demo of 60 participants is loaded per database and shared by the tests of this module.
The PDFs are read back with pdfplumber, as a reader would see them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import time
from types import SimpleNamespace

import pdfplumber
import pytest
from sqlalchemy import select

from randomization.release import release_digest
from reports import counting as c
from reports import pdf as report_pdf
from reports import story as report_story
from reports.data import load_safety_data, resolve_cutoff
from reports.layout import PageMarks, render
from tests.conftest import BACKENDS
from tests.demo_helpers import fresh_app
from trial.audit.models import AuditEvent
from trial.auth.services import get_user_by_username
from trial.extensions import db
from trial.protocol import current_protocol

N = 60


# --- reading a report back -----------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _pages(data: bytes) -> tuple[str, ...]:
    with pdfplumber.open(io.BytesIO(data)) as document:
        return tuple(page.extract_text() or "" for page in document.pages)


def pdf_pages(data: bytes) -> list[str]:
    return list(_pages(data))


def pdf_metadata(data: bytes) -> dict:
    with pdfplumber.open(io.BytesIO(data)) as document:
        return dict(document.metadata)


def report_text(data: bytes) -> str:
    """Everything a reader of the PDF sees (text and metadata), whitespace collapsed, without
    the protocol title: it names the drug as the trial's subject, not anyone's allocation."""
    text = " ".join(" ".join(pdf_pages(data)).split())
    metadata = " ".join(str(v) for v in pdf_metadata(data).values())
    title = " ".join(current_protocol().title.split())
    return (text.replace(title, "") + " " + metadata).strip()


def open_report_leaks(data: bytes, arm_names=None) -> list[str]:
    """What in a report would reveal an arm to an open-session reader.

    Arm names anywhere; a header with more than one denominator "(N=...)" (a column per arm)
    or a lone coded column letter next to Total; an "Arm" column in a listing; and any row of
    Tables 2-9 with more count cells than the pooled layout's two.
    """
    arm_names = arm_names or current_protocol().arms
    found = []
    text = report_text(data)
    for arm in arm_names:
        if arm.casefold() in text.casefold():
            found.append(f"arm name {arm!r}")
    lines = [line.strip() for page in pdf_pages(data) for line in page.splitlines()]
    counted = False  # inside Tables 2-9, where the open layout has at most two cells a row
    for line in lines:
        if re.match(r"Table (\d+)\.", line):
            counted = 2 <= int(re.match(r"Table (\d+)\.", line).group(1)) <= 9
        if len(re.findall(r"\(N=\d+\)", line)) > 1:
            found.append(f"per-arm denominators: {line!r}")
        if re.fullmatch(r"(?:[A-H] )+Total", line):
            found.append(f"coded arm columns: {line!r}")
        if re.match(r"Site Participant Arm\b", line):
            found.append(f"arm column in a listing: {line!r}")
        cells = re.findall(r"(?:^| )(\d+ \(\d+\.\d\)|0)(?= |$)", line)
        if counted and len(cells) > 2 and re.match(r"[A-Za-z]", line):
            found.append(f"more than the Total column: {line!r}")
    return found


# --- the shared demo -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    with fresh_app(request.param, request, tmp_path_factory.mktemp("reports")) as application:
        result = application.test_cli_runner().invoke(
            args=["trial", "demo", "--participants", str(N), "--seed", "7"]
        )
        assert result.exit_code == 0, result.output
        db.session.remove()
        # A default cut-off is now to the second: records of the current second come after
        # it. Let that second pass so the whole demo is in.
        time.sleep(1.05)
        cutoff = resolve_cutoff(None)
        dsmb = get_user_by_username("dsmb")
        closed = report_pdf.produce_safety_report(dsmb, "closed", "coded", cutoff.isoformat())
        opened = report_pdf.produce_safety_report(dsmb, "open", None, cutoff.isoformat())
        yield SimpleNamespace(app=application, cutoff=cutoff, closed=closed, opened=opened)


@pytest.fixture
def trial(demo):
    with demo.app.app_context():
        yield demo
        db.session.remove()


def engine_rows(trial, arm_of=None):
    """The incidence rows and columns the engine computes for the demo, independently of the
    PDF: the same data, counted again."""
    data = load_safety_data(trial.cutoff)
    population = c.safety_population(data.participants)
    labels = report_story.arm_labels("coded")
    columns = c.build_columns(population, arm_of, labels)
    emergent = c.treatment_emergent(data.adverse_events, c.first_doses(data.participants))
    return columns, c.any_event_row(emergent, columns), c.incidence(emergent, columns)


def dsmb_arms():
    from randomization.outputs import arms_for_closed_report

    arms = arms_for_closed_report(get_user_by_username("dsmb"))
    db.session.rollback()
    return arms


def expected_line(row, columns) -> str:
    cells = [c.n_pct(row.n(col, grade), col.denominator) for col in columns for grade in (1, 3)]
    return " ".join([row.label, *cells])


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("session", ["closed", "open"])
def test_incidence_table_text_agrees_with_the_engine(trial, session):
    report = trial.closed if session == "closed" else trial.opened
    columns, any_row, rows = engine_rows(trial, dsmb_arms() if session == "closed" else None)
    assert len(columns) == (3 if session == "closed" else 1)
    assert rows and any(r.level == "pt" for r in rows)
    lines = [line.strip() for page in pdf_pages(report.pdf) for line in page.splitlines()]
    start = lines.index("Any grade Grade 3-5" if session == "open" else
                        "Any grade Grade 3-5 Any grade Grade 3-5 Any grade Grade 3-5")  # fmt: skip
    table_lines = lines[start:]
    missing = [
        expected_line(row, columns)
        for row in [any_row, *rows]
        if expected_line(row, columns) not in table_lines
    ]
    assert not missing, missing
    # The engine's order is the printed order.
    positions = [table_lines.index(expected_line(row, columns)) for row in [any_row, *rows]]
    assert positions == sorted(positions)
    headers = " ".join(lines)
    for column in columns:
        assert f"(N={column.denominator})" in headers


def test_every_page_has_the_session_the_cutoff_and_page_x_of_y(trial):
    stamp = trial.cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")
    for report, word in ((trial.closed, "CLOSED - DSMB only"), (trial.opened, "OPEN")):
        pages = pdf_pages(report.pdf)
        assert len(pages) >= 4
        for number, text in enumerate(pages, start=1):
            first = text.splitlines()[0]
            assert first.startswith(word) and stamp in first, (number, first)
            assert f"Page {number} of {len(pages)}" in text
        assert f"Data cut-off: {stamp}" in pages[0] and f"Generated: {stamp}" in pages[0]


def test_split_tables_repeat_their_header_rows(trial):
    pages = pdf_pages(trial.closed.pdf)
    with_rows = [p for p in pages if "Preferred term" in p or "Nervous system disorders" in p]
    spanning = [p for p in pages if re.search(r"^\s*(Somnolence|Insomnia|Fatigue) ", p, re.M)]
    assert spanning
    for page in spanning:
        assert "System organ class" in page and "Any grade Grade 3-5" in page
    assert with_rows


def test_the_open_report_reveals_no_arm(trial):
    assert open_report_leaks(trial.opened.pdf) == []
    text = report_text(trial.opened.pdf)
    assert "Table 6." in text and "Listing 1." in text  # not vacuous: the report is there
    assert "(N=" in text


def test_controls_the_scanner_flags_a_report_with_arms(trial):
    """Negative controls: the closed report, and an 'open' report with arm columns planted,
    are both flagged; named arms are flagged by name."""
    assert open_report_leaks(trial.closed.pdf)
    data = load_safety_data(trial.cutoff)
    planted = render(
        report_story.build_story(data, "open", None, dsmb_arms()),
        PageMarks("OPEN", "x", "T"),
        {"title": "t", "author": "a", "subject": "s", "creator": "c"},
    )
    kinds = {leak.split(":")[0] for leak in open_report_leaks(planted)}
    assert {"per-arm denominators", "more than the Total column"} <= kinds, kinds
    named = render(
        report_story.build_story(data, "closed", "named", dsmb_arms()),
        PageMarks("OPEN", "x", "T"),
        {"title": "t", "author": "a", "subject": "s", "creator": "c"},
    )
    assert any(leak.startswith("arm name") for leak in open_report_leaks(named))


def test_metadata_carries_nothing_about_arms(trial):
    for report in (trial.closed, trial.opened):
        metadata = pdf_metadata(report.pdf)
        values = " ".join(str(v) for v in metadata.values()).casefold()
        assert not any(arm in values for arm in current_protocol().arms)
        assert metadata["CreationDate"] == metadata["ModDate"] == "D:20000101000000+00'00'"
    assert "(A)" not in report_text(trial.closed.pdf)  # no code key such as "baclofen (A)"


def test_same_data_and_cutoff_give_the_same_bytes_and_each_is_audited(trial):
    dsmb = get_user_by_username("dsmb")
    again = report_pdf.produce_safety_report(dsmb, "closed", "coded", trial.cutoff.isoformat())
    assert again.sha256 == trial.closed.sha256
    assert again.pdf == trial.closed.pdf
    assert hashlib.sha256(again.pdf).hexdigest() == again.sha256
    events = list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report_safety").order_by(AuditEvent.seq)
        )
    )
    details = [json.loads(e.detail) for e in events]
    digests = [d.get("sha256") or d["hmac_sha256"] for d in details]
    # The closed report is recorded with a keyed digest only (its plain one is an oracle for
    # the arms: tests/test_release_blinding.py); the open one with its SHA-256.
    keyed = release_digest(trial.closed.pdf)
    assert digests == [keyed, trial.opened.sha256, release_digest(again.pdf)] and again.pdf
    assert "sha256" not in details[0] and "sha256" not in details[2]
    for event in events:
        text = json.dumps(event.detail) if not isinstance(event.detail, str) else event.detail
        assert not any(arm in text.casefold() for arm in current_protocol().arms)
    # A different cut-off is a different report.
    earlier = report_pdf.render_safety_report(
        dsmb, "closed", "coded", (trial.cutoff.replace(microsecond=0)).isoformat()[:-6] + "+01:00"
    )
    db.session.rollback()
    assert earlier.sha256 != trial.closed.sha256


def test_listings_are_ordered_by_site_participant_and_onset(trial):
    pages = pdf_pages(trial.closed.pdf)
    text = "\n".join(pages)
    block = text[text.index("Listing 1. Serious adverse events") : text.index("Listing 2.")]
    keys = [
        (m.group(1), m.group(2), m.group(3))
        for m in re.finditer(r"^(S\d\d) (S\d\d-\d{4}) [AB] .*?(\d{4}-\d\d-\d\d)", block, re.M)
    ]
    assert keys == sorted(keys)


def test_same_bytes_from_fresh_processes_with_different_hash_seeds(trial, tmp_path):
    """String hashing differs between processes; no set order may reach the PDF."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    digests = set()
    for seed in ("1", "2"):
        out = tmp_path / f"closed-{seed}.pdf"
        env = dict(
            os.environ,
            PYTHONHASHSEED=seed,
            DATABASE_URL=trial.app.config["SQLALCHEMY_DATABASE_URI"],
            ARM_KEY=trial.app.config["ARM_KEY"],
            TRIAL_INSTANCE_DIR=str(tmp_path / "instance"),
        )
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "reports", "safety", "--as", "dsmb",
             "--session", "closed", "--cutoff", trial.cutoff.isoformat(), "--out", str(out)],
            cwd=root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests == {trial.closed.sha256}


# --- layout, read back (the readers of tests/test_reports_layout.py) -----------------------


@pytest.mark.parametrize("session", ["closed", "open"])
def test_listing_1_keeps_every_word_whole(trial, session):
    """Every word of Listing 1's header and cells reads back whole: none is cut across lines
    ("Particip/ant", "2026-01/-13" before)."""
    from reports.listings import sae_rows
    from tests.test_reports_layout import broken_words

    report = trial.closed if session == "closed" else trial.opened
    data = load_safety_data(trial.cutoff)
    people = {p.participant_id: p for p in data.participants if p.randomized_on is not None}
    label_of = None
    if session == "closed":
        labels = dict(report_story.arm_labels("coded"))
        label_of = {pid: labels[arm] for pid, arm in dsmb_arms().items()}
    header, rows = sae_rows(data.adverse_events, people, label_of)
    assert rows, "the demo has serious adverse events"
    assert broken_words(report.pdf, [header, *rows], "Listing 1.", "Listing 2.") == []


@pytest.mark.parametrize("session", ["closed", "open"])
def test_every_footnote_is_on_the_page_where_its_table_ends(trial, session):
    from tests.test_reports_layout import misplaced_notes, section_pages

    report = trial.closed if session == "closed" else trial.opened
    assert misplaced_notes(report.pdf) == []
    sections = section_pages(report.pdf)
    expected = {f"Table {n}." for n in range(1, 12)} | {f"Listing {n}." for n in range(1, 5)}
    assert expected | {"Figure 1.", "Figure 2."} <= set(sections)
    assert all(pages["note"] for pages in sections.values())


def test_table_10_prints_the_rule_it_counts_by(trial):
    from reports.summaries import COMPLETENESS_RULE

    text = " ".join(" ".join(pdf_pages(trial.opened.pdf)).split())
    assert COMPLETENESS_RULE in text
