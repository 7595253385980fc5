"""The DSMB report's layout, read back with pdfplumber as a reader sees it, on hand-built data.

- A listing cell never splits a word across lines (the old fixed, narrow columns did:
  "Particip/ant", "2026-01/-13"), checked against every word of every cell; the old layout is
  the negative control.
- A footnote is on the page where its table ends, and a heading on the page where its table
  starts, wherever the page breaks fall; the old layout (footnote after the table) is the
  negative control.
- Table 10 counts a hand-built case by the rule its footnote states.

The same readers check the demo reports in ``tests/test_reports_pdf.py``. No database here.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from types import SimpleNamespace

import pdfplumber
import pytest
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Paragraph, Spacer

from reports import listings, summaries
from reports import tables as t
from reports.layout import CONTENT_WIDTH, STYLES, PageMarks, render
from reports.rows import AdverseEventRow, ParticipantRow, SafetyData, VisitRow
from reports.story import completeness_tables

META = {"title": "t", "author": "a", "subject": "s", "creator": "c"}
NOTE_GREY = 0x33 / 0xFF  # the footnote style's text colour, #333333
HEADING_SIZE = 13
PAGE_MARK_SIZES = (8, 11)  # the header (session, cut-off) and the "Page x of y" footer


def render_story(story) -> bytes:
    return render(story, PageMarks("OPEN", "2026-01-01 00:00:00 UTC", "T"), META)


# --- reading a PDF back --------------------------------------------------------------------


def page_lines(page) -> list[list[dict]]:
    """The page's words grouped into lines, top to bottom (words of a line share their top)."""
    words = page.extract_words(extra_attrs=["size", "non_stroking_color"])
    lines: dict[float, list[dict]] = {}
    for word in words:
        lines.setdefault(round(word["top"], 1), []).append(word)
    return [sorted(lines[top], key=lambda w: w["x0"]) for top in sorted(lines)]


def _text(line) -> str:
    return " ".join(w["text"] for w in line)


def broken_words(pdf: bytes, rows, start: str, end: str | None = None) -> list[str]:
    """Words of ``rows`` (a listing's header and cells, as printed) that a reader does not find
    whole between the line starting ``start`` and the one starting ``end``: a word split across
    two lines of a cell reads as two pieces, neither of them the word."""
    found, inside = set(), False
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        for page in document.pages:
            for line in page_lines(page):
                text = _text(line)
                if text.startswith(start):
                    inside = True
                elif end is not None and text.startswith(end):
                    inside = False
                if inside:
                    found.update(w["text"] for w in line)
    wanted = {word for row in rows for cell in row for word in str(cell).split()}
    return sorted(wanted - found)


def _kind(word) -> str:
    size = round(word["size"], 1)
    if size in PAGE_MARK_SIZES:
        return "mark"
    if size == HEADING_SIZE:
        return "heading"
    colour = word.get("non_stroking_color") or ()
    if size == 7 and len(colour) == 3 and all(abs(v - NOTE_GREY) < 0.01 for v in colour):
        return "note"
    return "body"


def section_pages(pdf: bytes) -> dict[str, dict[str, list[int]]]:
    """Per section (by its heading's first two words, "Table 8."): the pages of its heading,
    of its body (table rows, figure) and of its footnote, in reading order."""
    sections: dict[str, dict[str, list[int]]] = {}
    current, previous = None, None
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        for number, page in enumerate(document.pages, start=1):
            for line in page_lines(page):
                kind = _kind(line[0])
                if kind == "mark":
                    continue
                if kind == "heading" and previous != "heading":  # a heading's 2nd line: same
                    current = " ".join(_text(line).split()[:2])
                    sections[current] = {"heading": [], "body": [], "note": []}
                previous = kind
                if current is not None:
                    sections[current][kind].append(number)
    return sections


def misplaced_notes(pdf: bytes) -> list[str]:
    """Sections whose footnote is not (all) on the page where the table or figure ends, or
    whose heading is not on the page where it starts."""
    found = []
    for title, pages in section_pages(pdf).items():
        if not pages["body"]:
            continue
        if pages["note"] and set(pages["note"]) != {max(pages["body"])}:
            found.append(f"{title}: body on {sorted(set(pages['body']))}, note on "
                         f"{sorted(set(pages['note']))}")  # fmt: skip
        if set(pages["heading"]) != {min(pages["body"])}:
            found.append(f"{title}: heading on {sorted(set(pages['heading']))}, body from "
                         f"page {min(pages['body'])}")  # fmt: skip
    return found


# --- Listing 1: whole words ----------------------------------------------------------------

DAY = date(2026, 1, 13)


def sae_fixture():
    """Twelve serious events with long terms, several criteria, ongoing ends, uncoded terms."""
    people, events, arm_of = {}, [], {}
    terms = [
        ("Alcohol withdrawal syndrome", "Psychiatric disorders"),
        ("Intentional overdose", "Injury, poisoning and procedural complications"),
        ("Pancreatitis acute", "Gastrointestinal disorders"),
        ("Generalised tonic-clonic seizure", "Nervous system disorders"),
        (None, None),
        ("Delirium tremens", "Psychiatric disorders"),
    ]
    for i in range(12):
        pid = f"S0{1 + i % 3}-{i + 1:04d}"
        start = DAY - timedelta(days=60)
        day0, dose = start + timedelta(days=20), start + timedelta(days=21)
        people[pid] = ParticipantRow(pid, pid[:3], "F", 1970, start, day0, dose)
        arm_of[pid] = "AB"[i % 2]
        term, soc = terms[i % len(terms)]
        events.append(
            AdverseEventRow(
                pid, term or "heavy legs in the evening, every evening", term, soc,
                DAY + timedelta(days=i), 3 + i % 2,
                end_date=None if i % 4 == 0 else DAY + timedelta(days=i + 9),
                serious=True,
                seriousness_criteria=(("life_threatening", "hospitalisation", "other_important")
                                      if i % 3 == 0 else ("hospitalisation",)),
                relatedness=("not_related", "possible", "unlikely")[i % 3],
                action_taken=("drug_interrupted", "not_applicable", "none")[i % 3],
                outcome=("not_recovered", "recovered", "recovering")[i % 3],
            )
        )  # fmt: skip
    return people, events, arm_of


def _old_sae_listing(people, events, arm_of):
    """Listing 1 as it was laid out before: fixed widths scaled to the page, centred cells,
    and reportlab's default of cutting a word too long for its column."""
    header, rows = listings.sae_rows(events, people, arm_of)
    widths = [26, 48, 34, 100, 46, 46, 28, 58, 50, 62, 62, 18]
    widths = [w * CONTENT_WIDTH / sum(widths) for w in widths]
    return t.section("Listing 1. Serious adverse events", t.table([header], rows, widths), "Note.")


@pytest.mark.parametrize("arms", [True, False], ids=["closed", "open"])
def test_no_listing_cell_splits_a_word(arms):
    people, events, arm_of = sae_fixture()
    arm_of = arm_of if arms else None
    header, rows = listings.sae_rows(events, people, arm_of)
    assert any("[uncoded]" in cell for row in rows for cell in row)
    pdf = render_story(listings.sae_listing("Listing 1. Serious adverse events", events, people,
                                            arm_of))  # fmt: skip
    assert broken_words(pdf, [header, *rows], "Listing 1.") == []
    # Not vacuous: the words are there, and some cells did wrap (at a space).
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        text = document.pages[0].extract_text()
    assert "Participant" in text and "2026-01-13" in text and "Relatedness" in text
    assert "Alcohol withdrawal syndrome" not in text  # wrapped at a space, the words whole


def test_control_the_old_narrow_columns_are_caught(monkeypatch):
    people, events, arm_of = sae_fixture()
    old_cell = ParagraphStyle("old_cell", parent=STYLES["cell"], splitLongWords=1)
    monkeypatch.setitem(STYLES, "cell", old_cell)
    header, rows = listings.sae_rows(events, people, arm_of)
    pdf = render_story(_old_sae_listing(people, events, arm_of))
    broken = broken_words(pdf, [header, *rows], "Listing 1.")
    assert {"Participant", "Grade", "Relatedness"} <= set(broken), broken
    assert any(word.startswith("2026-") for word in broken), broken  # a date cut


def printed_cells(section) -> list[list[str]]:
    """The header and cells of a section's table as laid out (wrapped cells as plain text),
    less its footnote row."""
    table = section[0]._content[1]
    return [
        [v.getPlainText() if isinstance(v, Paragraph) else str(v) for v in row]
        for row in table._cellvalues[:-1]
    ]


def test_every_listing_keeps_its_words_whole():
    """Deaths, liver and unblinding listings too, with arms (the most columns)."""
    from reports.liver import LiverFinding

    people, events, arm_of = sae_fixture()
    events = [e if i % 4 else AdverseEventRow(**{**e.__dict__, "outcome": "fatal"})
              for i, e in enumerate(events)]  # fmt: skip
    findings = [LiverFinding(pid, {"ALT": 3.456, "AST": 4.5, "bilirubin": 2.25}, DAY)
                for pid in sorted(people)[:5]]  # fmt: skip
    deaths = listings.death_listing("Listing 2. Deaths", events, people, arm_of)
    liver = listings.liver_listing("Listing 3. Liver", findings, people, arm_of)
    pdf = render_story(deaths + liver)
    for title, end, section in (("Listing 2.", "Listing 3.", deaths), ("Listing 3.", None, liver)):
        cells = printed_cells(section)
        assert len(cells) > 3 and any(len(c.split()) > 1 for row in cells for c in row)
        assert broken_words(pdf, cells, title, end) == [], title


# --- footnotes on the page of their table --------------------------------------------------


def _rows(n: int) -> list[list[str]]:
    return [[f"Row {i}", str(i), f"{i} (1.0)"] for i in range(n)]


NOTE = ("N: safety population in the column. This footnote has several lines, as Table 8's "
        "has: a long line that wraps, and another; " * 3)  # fmt: skip
HEADER = [["", "n", "n (%)"]]
WIDTHS = [250, 120, CONTENT_WIDTH - 370]
# Tables of many lengths, shorter and longer than a page, one after the other: their ends and
# the page breaks fall at every height of a page (one document, read once: a quick test).
LENGTHS = [30, 7, 33, 75, 12, 41, 26, 90, 18, 36, 3, 44, 29, 61, 22, 38, 9, 47, 15, 52, 5]


def new_layout(lengths):
    story = []
    for k, n in enumerate(lengths, start=1):
        story += t.section(f"Table {k}. Hand-made", t.table(HEADER, _rows(n), WIDTHS), NOTE, NOTE)
    return story


def old_layout(lengths):
    """The layout before: the heading kept with the table only, then a spacer, the footnote."""
    heading = ParagraphStyle("old_h1", parent=STYLES["h1"], keepWithNext=1)
    story = []
    for k, n in enumerate(lengths, start=1):
        story += [Paragraph(f"Table {k}. Hand-made", heading),
                  t.table(HEADER, _rows(n), WIDTHS).build(), Spacer(1, 2),
                  t.footnote(NOTE, NOTE), Spacer(1, 6)]  # fmt: skip
    return story


def test_a_footnote_is_on_the_page_where_its_table_ends():
    """Wherever the page breaks fall, each footnote is on the page of its table's last row,
    and each heading on the page of its first; the old layout is caught (the control)."""
    pdf = render_story(new_layout(LENGTHS))
    assert misplaced_notes(pdf) == []
    pages = section_pages(pdf)
    assert len(pages) == len(LENGTHS)  # not vacuous: every section read back
    assert all(p["note"] and p["body"] and p["heading"] for p in pages.values())
    assert any(len(set(p["body"])) > 1 for p in pages.values())  # some tables split
    old = misplaced_notes(render_story(old_layout(LENGTHS)))
    assert any("note on" in finding for finding in old), old


def test_a_long_table_starts_on_the_page_it_is_reached_and_repeats_its_header():
    """A table longer than a page starts below what precedes it (no half-blank page)."""
    pdf = render_story([Paragraph("Text before. " * 40, STYLES["body"]), *new_layout([120])])
    pages = section_pages(pdf)["Table 1."]
    assert min(pages["heading"]) == 1 and max(pages["body"]) >= 2
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        assert all("n (%)" in page.extract_text() for page in document.pages)


# --- Table 10: the count and its footnote's rule ------------------------------------------

FOLLOW_UP = SimpleNamespace(code="follow_up", label="Follow-up (week 30)", day=210,
                            earliest_day=203, latest_day=217)  # fmt: skip
WEEK_8 = SimpleNamespace(code="week_8", label="Week 8", day=56, earliest_day=51, latest_day=61)


def completeness_fixture():
    """Seven participants around the follow-up visit (day 210, window days 203-217)."""
    day0 = date(2025, 1, 6)
    cutoff = day0 + timedelta(days=300)

    def person(pid, randomized=day0, disposition=None, on=None):
        return ParticipantRow(pid, "S01", "M", 1980, day0 - timedelta(days=10), randomized,
                              randomized, disposition, on)  # fmt: skip

    participants = [
        # Completed the study on day 202 at a follow-up visit done that day, the day before
        # the window opened (the case of issue 26): recorded, so expected, and completed.
        person("S01-0001", disposition="completed", on=day0 + timedelta(days=202)),
        # Withdrew on day 100, nothing recorded: the follow-up is not expected.
        person("S01-0002", disposition="withdrew", on=day0 + timedelta(days=100)),
        # Ongoing, window closed, nothing recorded: expected, neither completed nor missed.
        person("S01-0003"),
        # Lost on day 150, the follow-up recorded as missed: recorded, so expected, missed.
        person("S01-0004", disposition="lost_to_follow_up", on=day0 + timedelta(days=150)),
        # Randomized 100 days before the cut-off: the window has not closed; not expected.
        person("S01-0005", randomized=cutoff - timedelta(days=100)),
        # Not randomized: no schedule.
        person("S01-0006", randomized=None),
        # Withdrew on the day the window opened, nothing recorded: expected (not before it).
        person("S01-0007", disposition="withdrew", on=day0 + timedelta(days=203)),
    ]
    visits = [
        VisitRow("S01-0001", "follow_up", "completed", day0 + timedelta(days=202)),
        VisitRow("S01-0004", "follow_up", "missed", None),
        VisitRow("S01-0001", "week_8", "completed", day0 + timedelta(days=56)),
    ]
    return SafetyData(cutoff=None, cutoff_date=cutoff, participants=participants, visits=visits)


def test_table_10_counts_a_hand_built_case_by_its_footnotes_rule():
    rows = summaries.completeness(completeness_fixture(), [WEEK_8, FOLLOW_UP])
    # Week 8: everyone randomized by day 239 of the cut-off; no one ended before day 51.
    assert rows[0] == ("Week 8", 6, 1, 0, "1 (16.7)")
    # Follow-up: 0001 (recorded, early, on its disposition day), 0003, 0004 (recorded
    # missed), 0007 (ended the day the window opened): 4 expected, 1 completed, 1 missed.
    assert rows[1] == ("Follow-up (week 30)", 4, 1, 1, "1 (25.0)")


def test_table_10_footnote_states_that_rule():
    rule = summaries.COMPLETENESS_RULE
    assert "recorded (completed or missed, whatever its date" in rule
    assert "window closed by the cut-off date with no final disposition dated before" in rule
    story = completeness_tables(completeness_fixture(), SimpleNamespace(visits=[WEEK_8, FOLLOW_UP]))
    pdf = render_story(story)
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        text = " ".join(" ".join(p.extract_text().split()) for p in document.pages)
    assert rule in text
    assert "Follow-up (week 30) 4 1 1 1 (25.0)" in text
