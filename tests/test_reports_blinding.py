"""Table 12, the blinding assessment, on a small trial built through the API: the closed
report's counts by arm and its indices against hand-computed values, the open report's
pooled counts with no per-arm figure and no index, and the counting rule (answers entered in
error, recorded after the cut-off or corrected after it). SQLite and PostgreSQL.

The trial: eight participants of one stratum (S01, women), randomized 175 days ago, so both
arms have at least three (the first block holds both arms). The first three of each arm,
B1-B3 on baclofen and P1-P3 on placebo, answer:

    participant, week 12      B1 strongly baclofen, B2 somewhat baclofen, B3 don't know,
                              P1 strongly placebo, P2 somewhat baclofen, P3 somewhat placebo
    investigator, week 12     B1 somewhat placebo, everyone else don't know
    participant, end of tr.   B1 strongly baclofen, P1 strongly baclofen; B2 strongly placebo
                              entered in error; P2 somewhat baclofen recorded after the cut-off;
                              B1 corrected to don't know after the cut-off
    investigator, end of tr.  nobody

By hand (five answers, Bang 2004's weights 1, 0.5, 0, -0.5, -1; z = 1.959964):
    participant week 12, baclofen: BI = (1 + 0.5 + 0)/3 = 0.50; Var = ((1 + 0.25)/3 - 0.25)/3
        = 0.0556, SE 0.2357, CI 0.04 to 0.96.
    participant week 12, placebo: BI = (1 - 0.5 + 0.5)/3 = 0.33; Var = ((1 + 0.25 + 0.25)/3
        - 1/9)/3 = 7/54, SE 0.3600, CI -0.37 to 1.04.
    participant week 12, James (3 answers: baclofen arm 2 active, 0 control, 1 don't know;
        placebo arm 1 active, 2 control): N = 6, Pdk = 1/6, Pdo = 0.5 x (1/6)/(5/6) = 0.1,
        Pde = 0.5 x (1/2 x 1/2 + 1/3 x 1/3)/(5/6)^2 = 0.26, Kd = -8/13,
        BI = (1 + 1/6 + 5/6 x -8/13)/2 = 17/52 = 0.33.
    investigator week 12: baclofen BI = -0.5/3 = -0.17, Var = (0.25/3 - 1/36)/3 = 1/54,
        SE 0.1361, CI -0.43 to 0.10; placebo: all don't know, n/a; James: Pdk = 5/6,
        Pdo = Pde = 0.5, Kd = 0, BI = (1 + 5/6)/2 = 11/12 = 0.92.
    participant end of treatment: baclofen BI = 1 (variance 0: no CI), placebo BI = -1 (no
        CI); James: every guess names baclofen, Pde = 0.5 x (1 x 1/2 + 0)/1 ... = 0.25,
        Pdo = 0.5 x 1/2 = 0.25, Kd = 0, BI = 0.5.
"""

from __future__ import annotations

import io
import math
import re
import time
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from statistics import NormalDist
from types import SimpleNamespace

import pdfplumber
import pytest

from exports.snapshot import parse_cutoff
from reports import blinding
from reports import pdf as report_pdf
from reports.blinding import index_text
from reports.blinding_bang import BANG_FORMULA, bang_index
from reports.blinding_guesses import FiveCategory, GuessTable, ThreeCategory, tally
from reports.blinding_james import JAMES_FORMULA, james_index
from reports.data import load_safety_data, resolve_cutoff
from reports.layout import CONTENT_WIDTH, STYLES
from reports.rows import BlindingRow
from tests.capture_helpers import PASSWORD, Trial
from tests.conftest import BACKENDS
from tests.test_exports_bundle import now_cutoff
from tests.test_reports_pdf import open_report_leaks
from trial import protocol as trial_protocol
from trial.database import utcnow
from trial.extensions import db
from trial.protocol.loader import load_protocol

D = timedelta(days=1)
TITLE = "Table 12. Blinding assessment"


def answer(respondent, guess, confidence=None):
    return {"respondent": respondent, "guess": guess, "confidence": confidence}


def table_12_lines(pdf: bytes) -> list[str]:
    """The text lines of Table 12 (the report's last section), page furniture left out."""
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        text = "\n".join(page.extract_text() or "" for page in document.pages)
    start = text.index(TITLE)
    lines = [line.strip() for line in text[start:].splitlines()]
    furniture = re.compile(r"^(Page \d+ of \d+|CLOSED - DSMB only.*|OPEN\b.*)$")
    return [line for line in lines if line and not furniture.match(line)]


def table_rows(lines: list[str]) -> list[str]:
    """The table's rows: from its header row to the first footnote line."""
    first = next(i for i, line in enumerate(lines) if line.startswith("Respondent, visit"))
    last = next(i for i, line in enumerate(lines) if line.startswith("Answers counted:"))
    return lines[first:last]


CELL = re.compile(r"\d+ \(\d+\.\d\)")


def per_arm_figures(lines: list[str], per_arm_cells: set[str]) -> list[str]:
    """What in a Table 12 would be a per-arm figure: a row with more than one count (a
    column per arm), a cell only a per-arm column has, or an index row."""
    found = []
    for line in table_rows(lines)[1:]:
        figures = re.findall(r"(?:\d+ \(\d+\.\d\)|(?<= )\d+$|(?<= )\d+(?= ))", line)
        if len(figures) > 1:
            found.append(f"more than one count: {line!r}")
        found += [f"per-arm cell {cell!r}: {line!r}" for cell in CELL.findall(line)
                  if cell in per_arm_cells]  # fmt: skip
        if "index" in line.casefold():
            found.append(f"an index: {line!r}")
    return found


@pytest.fixture
def built(client, make_site, make_user, make_participant):
    """The trial of the module docstring, with the cut-offs around its later changes."""
    from randomization.outputs import arms_for_closed_report

    trial = Trial(client, make_site, make_user, make_participant)
    dsmb, _ = make_user("dsmb", username="dsmb")
    people = [trial.enrol(day0_ago=175) for _ in range(8)]
    arm_of = arms_for_closed_report(dsmb)
    b = [p for p in people if arm_of[p.pid] == "baclofen"][:3]
    pl = [p for p in people if arm_of[p.pid] == "placebo"][:3]
    assert len(b) == len(pl) == 3, "one stratum's first block holds both arms"

    week_12 = [
        (b[0], [answer("participant", "baclofen", "strongly"),
                answer("investigator", "placebo", "somewhat")]),
        (b[1], [answer("participant", "baclofen", "somewhat"),
                answer("investigator", "dont_know")]),
        (b[2], [answer("participant", "dont_know"), answer("investigator", "dont_know")]),
        (pl[0], [answer("participant", "placebo", "strongly"),
                 answer("investigator", "dont_know")]),
        (pl[1], [answer("participant", "baclofen", "somewhat"),
                 answer("investigator", "dont_know")]),
        (pl[2], [answer("participant", "placebo", "somewhat"),
                 answer("investigator", "dont_know")]),
    ]  # fmt: skip
    for p, body in week_12:
        response = trial.visit(p.pid, "week_12", p.day0 + 84 * D, blinding=body)
        assert response.status_code == 201, response.json
    eot = []
    for p, guess in (
        (b[0], answer("participant", "baclofen", "strongly")),
        (pl[0], answer("participant", "baclofen", "strongly")),
        (b[1], answer("participant", "placebo", "strongly")),
    ):
        response = trial.visit(p.pid, "end_of_treatment", p.day0 + 168 * D, blinding=[guess])
        assert response.status_code == 201, response.json
        eot.append(response.json["blinding"][0])
    before_error = now_cutoff()  # B2's end-of-treatment guess still stands here
    marked = trial.post(
        f"/blinding-assessments/{eot[2]['id']}/entered-in-error",
        {"reason": "asked the wrong participant", "version": 1},
    )
    assert marked.status_code == 200, marked.json
    cutoff = now_cutoff()
    late = trial.visit(
        pl[1].pid,
        "end_of_treatment",
        pl[1].day0 + 168 * D,
        blinding=[answer("participant", "baclofen", "somewhat")],
    )
    assert late.status_code == 201, late.json
    corrected = trial.patch(
        f"/blinding-assessments/{eot[0]['id']}",
        {"guess": "dont_know", "confidence": None, "reason": "misrecorded", "version": 1},
    )
    assert corrected.status_code == 200, corrected.json
    db.session.commit()
    return dict(trial=trial, dsmb=dsmb, b=b, pl=pl, cutoff=cutoff, before_error=before_error)


def report(built, session, arms=None, cutoff=None) -> bytes:
    made = report_pdf.produce_safety_report(
        db.session.merge(built["dsmb"]), session, arms, cutoff or built["cutoff"]
    )
    return made.pdf


def ci(table: FiveCategory, arm: str) -> str:
    return index_text(bang_index(table, arm))


# The hand-computed closed report (arms named), block by block.
EXPECTED_CLOSED = [
    "Respondent, visit / answer Baclofen Placebo Total",
    "Participant, Week 12",
    "Answers 3 3 6",
    "Strongly believes Baclofen 1 (33.3) 0 1 (16.7)",
    "Somewhat believes Baclofen 1 (33.3) 1 (33.3) 2 (33.3)",
    "Don't know 1 (33.3) 0 1 (16.7)",
    "Somewhat believes Placebo 0 1 (33.3) 1 (16.7)",
    "Strongly believes Placebo 0 1 (33.3) 1 (16.7)",
    "Bang's index (95% CI) 0.50 (0.04 to 0.96) 0.33 (-0.37 to 1.04)",
    "James' index (95% CI) 0.33 ({james_1})",
    "Participant, End of treatment (week 24)",
    "Answers 1 1 2",
    "Strongly believes Baclofen 1 (100.0) 1 (100.0) 2 (100.0)",
    "Somewhat believes Baclofen 0 0 0",
    "Don't know 0 0 0",
    "Somewhat believes Placebo 0 0 0",
    "Strongly believes Placebo 0 0 0",
    "Bang's index (95% CI) 1.00 (no CI) -1.00 (no CI)",
    "James' index (95% CI) 0.50 ({james_2})",
    "Investigator, Week 12",
    "Answers 3 3 6",
    "Strongly believes Baclofen 0 0 0",
    "Somewhat believes Baclofen 0 0 0",
    "Don't know 2 (66.7) 3 (100.0) 5 (83.3)",
    "Somewhat believes Placebo 1 (33.3) 0 1 (16.7)",
    "Strongly believes Placebo 0 0 0",
    "Bang's index (95% CI) -0.17 (-0.43 to 0.10) n/a",
    "James' index (95% CI) 0.92 ({james_3})",
    "Investigator, End of treatment (week 24)",
    "Answers 0 0 0",
    "Strongly believes Baclofen 0 0 0",
    "Somewhat believes Baclofen 0 0 0",
    "Don't know 0 0 0",
    "Somewhat believes Placebo 0 0 0",
    "Strongly believes Placebo 0 0 0",
    "Bang's index (95% CI) n/a n/a",
    "James' index (95% CI) n/a",
]

EXPECTED_OPEN = [
    "Respondent, visit / answer Total",
    "Participant, Week 12",
    "Answers 6",
    "Strongly believes active drug 1 (16.7)",
    "Somewhat believes active drug 2 (33.3)",
    "Don't know 1 (16.7)",
    "Somewhat believes control 1 (16.7)",
    "Strongly believes control 1 (16.7)",
    "Participant, End of treatment (week 24)",
    "Answers 2",
    "Strongly believes active drug 2 (100.0)",
    "Somewhat believes active drug 0",
    "Don't know 0",
    "Somewhat believes control 0",
    "Strongly believes control 0",
    "Investigator, Week 12",
    "Answers 6",
    "Strongly believes active drug 0",
    "Somewhat believes active drug 0",
    "Don't know 5 (83.3)",
    "Somewhat believes control 1 (16.7)",
    "Strongly believes control 0",
    "Investigator, End of treatment (week 24)",
    "Answers 0",
    *["Strongly believes active drug 0", "Somewhat believes active drug 0", "Don't know 0",
      "Somewhat believes control 0", "Strongly believes control 0"],
]  # fmt: skip
# Cells only a per-arm column of the closed report has (none equals a pooled cell).
PER_ARM_CELLS = {"1 (33.3)", "2 (66.7)", "3 (100.0)", "1 (100.0)"}


def james_limits(*arms: tuple[int, int, int]) -> str:
    """The interval of the engine on the hand-counted three-answer table (active, control,
    don't know per arm): the estimate is checked by hand above, the interval's arithmetic
    against the papers and the R package in tests/test_blinding_index.py."""
    result = james_index(GuessTable(ThreeCategory(*arms[0]), ThreeCategory(*arms[1])))
    text = index_text(result)
    return text[text.index("(") + 1 : -1]


def expected_closed() -> list[str]:
    return [
        line.format(
            james_1=james_limits((2, 0, 1), (1, 2, 0)),
            james_2=james_limits((1, 0, 0), (1, 0, 0)),
            james_3=james_limits((0, 1, 2), (0, 0, 3)),
        )
        for line in EXPECTED_CLOSED
    ]


def test_the_hand_counts_hold_for_the_engine():
    """The hand computations of the docstring, through the engine (so a wrong expectation
    in the report tests below would show here first)."""
    week_12 = tally(
        [("baclofen", "baclofen", "strongly"), ("baclofen", "baclofen", "somewhat"),
         ("baclofen", "dont_know", None), ("placebo", "placebo", "strongly"),
         ("placebo", "baclofen", "somewhat"), ("placebo", "placebo", "somewhat")],
        five_category=True,
    )  # fmt: skip
    assert ci(week_12.active, "active") == "0.50 (0.04 to 0.96)"
    assert ci(week_12.control, "control") == "0.33 (-0.37 to 1.04)"
    james = james_index(week_12)
    assert james.estimate == Fraction(17, 52)
    investigator = james_index(GuessTable(ThreeCategory(0, 1, 2), ThreeCategory(0, 0, 3)))
    assert investigator.estimate == Fraction(11, 12)
    assert ci(FiveCategory(0, 0, 1, 0, 2), "active") == "-0.17 (-0.43 to 0.10)"


def test_the_closed_report_counts_by_arm_against_the_hand_counts(built):
    lines = table_12_lines(report(built, "closed", "named"))
    assert table_rows(lines) == expected_closed()
    text = " ".join(lines)
    assert "Bang's index uses the five answers" in text
    assert BANG_FORMULA in text and JAMES_FORMULA in text


def test_the_coded_closed_report_prints_each_guess_by_its_arms_code(built):
    """Coded: a guess is printed as the code of the arm it names (so no arm name sits next
    to a code), the same numbers as the named report in the coding's order."""
    from randomization.outputs import closed_report_coding

    coding = closed_report_coding()
    code = {arm: chr(ord("A") + i) for i, arm in enumerate(coding)}
    lines = table_rows(table_12_lines(report(built, "closed", "coded")))
    assert lines[0] == "Respondent, visit / answer A B Total"
    assert not any(arm in line.casefold() for line in lines for arm in ("baclofen", "placebo"))
    named = expected_closed()
    if coding[0] == "baclofen":  # A is baclofen: the named table with the names replaced
        expected = [line.replace("Baclofen", "A").replace("Placebo", "B") for line in named]
        expected[0] = "Respondent, visit / answer A B Total"
        assert lines == expected
    else:  # A is placebo: its column, and its guesses' rows, come first
        assert code == {"placebo": "A", "baclofen": "B"}
        assert lines[1:10] == [
            "Participant, Week 12",
            "Answers 3 3 6",
            "Strongly believes A 1 (33.3) 0 1 (16.7)",
            "Somewhat believes A 1 (33.3) 0 1 (16.7)",
            "Don't know 0 1 (33.3) 1 (16.7)",
            "Somewhat believes B 1 (33.3) 1 (33.3) 2 (33.3)",
            "Strongly believes B 0 1 (33.3) 1 (16.7)",
            "Bang's index (95% CI) 0.33 (-0.37 to 1.04) 0.50 (0.04 to 0.96)",
            named[9],
        ]


def test_the_open_report_shows_the_pooled_answers_and_no_per_arm_figure(built):
    opened = report(built, "open")
    lines = table_12_lines(opened)
    assert table_rows(lines) == EXPECTED_OPEN
    assert per_arm_figures(lines, PER_ARM_CELLS) == []
    assert open_report_leaks(opened) == []


def test_control_the_per_arm_check_catches_a_table_by_arm(built):
    """The open report's check, run on the closed report (a Table 12 with per-arm counts
    and indices), finds them: so it would fail an open report that printed them."""
    lines = table_12_lines(report(built, "closed", "named"))
    found = per_arm_figures(lines, PER_ARM_CELLS)
    assert any(f.startswith("more than one count") for f in found)
    assert any(f.startswith("per-arm cell") for f in found)
    assert any(f.startswith("an index") for f in found)
    # And on the pooled rows alone, a per-arm cell in place of a pooled one is caught.
    pooled = list(EXPECTED_OPEN)
    pooled[3] = "Strongly believes active drug 1 (33.3)"
    assert per_arm_figures([*pooled, "Answers counted:"], set()) == []
    found = per_arm_figures([*pooled, "Answers counted:"], PER_ARM_CELLS)
    assert found == ["per-arm cell '1 (33.3)': 'Strongly believes active drug 1 (33.3)'"]


def test_answers_entered_in_error_or_after_the_cutoff_are_not_counted(built):
    """At the cut-off: B2's guess entered in error is out, P2's recorded later is out, B1's
    later correction is undone. Controls: a cut-off before the error mark counts B2's guess,
    and a report of now counts P2's and shows B1's correction."""

    def eot(cutoff) -> list[tuple[str, str, str | None]]:
        rows = load_safety_data(parse_cutoff(cutoff) if isinstance(cutoff, str) else cutoff)
        return sorted(
            (r.participant_id, r.guess, r.confidence)
            for r in rows.blinding
            if r.visit_code == "end_of_treatment"
        )

    b, pl = built["b"], built["pl"]
    assert eot(built["cutoff"]) == sorted(
        [(b[0].pid, "baclofen", "strongly"), (pl[0].pid, "baclofen", "strongly")]
    )
    assert eot(built["before_error"]) == sorted(
        [
            (b[0].pid, "baclofen", "strongly"),
            (pl[0].pid, "baclofen", "strongly"),
            (b[1].pid, "placebo", "strongly"),
        ]
    )
    assert eot(utcnow()) == sorted(
        [
            (b[0].pid, "dont_know", None),
            (pl[0].pid, "baclofen", "strongly"),
            (pl[1].pid, "baclofen", "somewhat"),
        ]
    )
    # In print: the report of the cut-off has two end-of-treatment answers (Table 12 above);
    # the one before the error mark has B2's too.
    earlier = table_rows(table_12_lines(report(built, "closed", "named", built["before_error"])))
    block = earlier[earlier.index("Participant, End of treatment (week 24)") :]
    assert block[1] == "Answers 2 1 3"
    assert block[6] == "Strongly believes Placebo 1 (50.0) 0 1 (33.3)"


def test_answers_of_a_participant_whose_code_was_broken_are_left_out(built):
    """P3's code broken (after the cut-off): a report of now leaves out both of P3's week-12
    answers and says so under the table, in both reports; the report of the cut-off, before
    the break, counts them (the control) and says none was left out."""
    from tests.conftest import approve_for_code_break, bearer
    from tests.test_code_break_approval import login

    trial, pl = built["trial"], built["pl"]
    investigator = db.session.merge(trial.investigator_user["S01"])
    approve_for_code_break(investigator, PASSWORD)
    token = login(trial.client, investigator.username, PASSWORD)
    broken = trial.client.post(
        f"/api/v1/participants/{pl[2].pid}/code-break",
        headers=bearer(token),
        json={"reason": "suspected overdose", "password": PASSWORD},
    )
    assert broken.status_code == 200, broken.json
    db.session.rollback()

    def week_12(lines: list[str]) -> list[str]:
        rows = table_rows(lines)
        start = rows.index("Participant, Week 12")
        return rows[start : start + 7]

    now = table_12_lines(report(built, "closed", "named", utcnow().isoformat()))
    assert week_12(now) == [
        "Participant, Week 12",
        "Answers 3 2 5",
        "Strongly believes Baclofen 1 (33.3) 0 1 (20.0)",
        "Somewhat believes Baclofen 1 (33.3) 1 (50.0) 2 (40.0)",
        "Don't know 1 (33.3) 0 1 (20.0)",
        "Somewhat believes Placebo 0 0 0",
        "Strongly believes Placebo 0 1 (50.0) 1 (20.0)",
    ]
    note = "2 answers of 1 participant."
    assert note in " ".join(now)
    opened = table_12_lines(report(built, "open", None, utcnow().isoformat()))
    assert week_12(opened)[1] == "Answers 5" and note in " ".join(opened)
    then = table_12_lines(report(built, "closed", "named"))
    assert week_12(then) == expected_closed()[1:8]
    assert "0 answers of 0 participants." in " ".join(then)


# --- the closed report recomputed from the bundle and the key ------------------------------

ROUND = {"strongly": 1, "somewhat": Fraction(1, 2)}


def outside_n_pct(n: int, d: int) -> str:
    """n (%) as the footnote states it, computed here without the product's helpers."""
    if n == 0 or d == 0:
        return "0"
    pct = (Decimal(n) * 100 / Decimal(d)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{n} ({pct})"


def two_decimals(value) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(
        value, Fraction) else Decimal(value)  # fmt: skip
    text = str(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return "0.00" if text == "-0.00" else text


def outside_bang(answers: list[tuple[str, str | None]], arm: str) -> str:
    """Bang's index with Bang 2004's five weights, as the footnote states it."""
    n = len(answers)
    weights = [
        Fraction(0) if guess == "dont_know"
        else ROUND[confidence] * (1 if guess == arm else -1)
        for guess, confidence in answers
    ]  # fmt: skip
    if n == 0 or all(guess == "dont_know" for guess, _ in answers):
        return "n/a"
    estimate = sum(weights, Fraction(0)) / n
    variance = (sum((w * w for w in weights), Fraction(0)) / n - estimate**2) / n
    if variance == 0:
        return f"{two_decimals(estimate)} (no CI)"
    half = NormalDist().inv_cdf(0.975) * math.sqrt(variance)
    lower, upper = float(estimate) - half, float(estimate) + half
    return f"{two_decimals(estimate)} ({two_decimals(lower)} to {two_decimals(upper)})"


@pytest.fixture(scope="module", params=BACKENDS)
def demo_report(request, tmp_path_factory):
    """A demo of 80 participants with a fixed list: its closed report (arms named), its
    bundle and its key, all at one cut-off."""
    from randomization.outputs import allocation_key
    from tests.demo_helpers import fixed_list_seed, fresh_app
    from tests.test_exports_bundle import members, table
    from trial.auth.services import get_user_by_username

    directory = tmp_path_factory.mktemp("blinding-recompute")
    with fresh_app(request.param, request, directory) as application:
        runner = application.test_cli_runner()
        with fixed_list_seed():
            result = runner.invoke(args=["trial", "demo", "--participants", "80", "--seed", "5"])
        assert result.exit_code == 0, result.output
        db.session.remove()
        time.sleep(1.05)  # a default cut-off is to the second: let the load's second pass
        cutoff = resolve_cutoff(None)
        made = report_pdf.produce_safety_report(
            get_user_by_username("dsmb"), "closed", "named", cutoff.isoformat()
        )
        out = directory / "bundle.zip"
        args = ["exports", "blinded", "--as", "statistician", "--cutoff", cutoff.isoformat()]
        result = runner.invoke(args=[*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        files = members(out.read_bytes())
        key = {
            pid: arm
            for pid, _n, arm in allocation_key(get_user_by_username("unblinded_statistician"))
        }
        db.session.rollback()
        yield SimpleNamespace(
            pdf=made.pdf,
            guesses=table(files, "blinding_assessments.csv"),
            participants=table(files, "participants.csv"),
            key=key,
        )


def test_every_number_of_table_12_is_recomputed_from_the_bundle_and_the_key(demo_report):
    """An outside checker's count: the bundle's guesses, the key, and the rules printed under
    the table (James' index from the engine on the recomputed counts: its arithmetic is
    checked against the papers in tests/test_blinding_index.py)."""
    broken = {
        p["participant_id"]
        for p in demo_report.participants
        if p["unblinded_by_code_break"] == "true"
    }
    arms = ("baclofen", "placebo")
    order = [("baclofen", "strongly"), ("baclofen", "somewhat"), ("dont_know", None),
             ("placebo", "somewhat"), ("placebo", "strongly")]  # fmt: skip
    labels = ["Strongly believes Baclofen", "Somewhat believes Baclofen", "Don't know",
              "Somewhat believes Placebo", "Strongly believes Placebo"]  # fmt: skip
    blocks = [("participant", "week_12", "Participant, Week 12"),
              ("participant", "end_of_treatment", "Participant, End of treatment (week 24)"),
              ("investigator", "week_12", "Investigator, Week 12"),
              ("investigator", "end_of_treatment",
               "Investigator, End of treatment (week 24)")]  # fmt: skip
    expected = ["Respondent, visit / answer Baclofen Placebo Total"]
    counted = 0
    for respondent, visit, title in blocks:
        by_arm = {arm: [] for arm in arms}
        for row in demo_report.guesses:
            pid = row["participant_id"]
            if row["respondent"] != respondent or row["visit_code"] != visit:
                continue
            if pid in broken or pid not in demo_report.key:
                continue
            by_arm[demo_report.key[pid]].append((row["guess"], row["confidence"] or None))
        counted += sum(map(len, by_arm.values()))
        total = sum(map(len, by_arm.values()))
        expected += [title, f"Answers {len(by_arm['baclofen'])} {len(by_arm['placebo'])} {total}"]
        for answer_, label in zip(order, labels, strict=True):
            cells = [outside_n_pct(by_arm[arm].count(answer_), len(by_arm[arm])) for arm in arms]
            pooled = sum(by_arm[arm].count(answer_) for arm in arms)
            expected.append(" ".join([label, *cells, outside_n_pct(pooled, total)]))
        expected.append(
            "Bang's index (95% CI) " + " ".join(outside_bang(by_arm[arm], arm) for arm in arms)
        )
        three = [
            ThreeCategory(
                sum(g == "baclofen" for g, _ in by_arm[arm]),
                sum(g == "placebo" for g, _ in by_arm[arm]),
                sum(g == "dont_know" for g, _ in by_arm[arm]),
            )
            for arm in arms
        ]
        expected.append("James' index (95% CI) " + index_text(james_index(GuessTable(*three))))
    assert counted > 50  # the demo's guesses are there to count
    assert table_rows(table_12_lines(demo_report.pdf)) == expected


# --- Table 12 from rows, without a database: layout, another protocol's arms, refusals -----
# (mutation survivors of reports/blinding.py: what the report tests above cannot reach)

PROTOCOL_VISITS = load_protocol(Path(trial_protocol.__file__).parents[1] / "protocol.toml").visits
WEEK_12 = date(2026, 3, 26)


def guess(pid, guess_, confidence=None, respondent="participant", visit="week_12"):
    return BlindingRow(pid, visit, WEEK_12, respondent, guess_, confidence)


def laid_out(section: list) -> SimpleNamespace:
    """A section's heading, its table's rows (text) and column widths, the rows printed bold
    and the rows indented, and its footnote's text (the table's last row)."""
    heading, table = section[0]._content
    cells = table._cellvalues
    styles = [row[0] for row in table._cellStyles[: len(cells) - 1]]
    return SimpleNamespace(
        heading=heading.text,
        rows=[" ".join(str(c) for c in row if c != "") for row in cells[:-1]],
        widths=list(table._colWidths),
        bold=[n for n, s in enumerate(styles) if s.fontname == "Helvetica-Bold"],
        indented=[n for n, s in enumerate(styles) if s.leftPadding == 14],
        note=cells[-1][0].text.split("<br/>"),
    )


def block_rows(start: int, rows_per_block: int, blocks: int = 4) -> tuple[list[int], list[int]]:
    """Row numbers of a table whose header is row 0 and whose blocks follow it: each block's
    title row (bold), then its rows (indented)."""
    titles = [start + k * rows_per_block for k in range(blocks)]
    others = [n for t in titles for n in range(t + 1, t + rows_per_block)]
    return titles, others


def test_table_12_for_another_protocols_arms_first_arm_placebo():
    """A protocol whose arms are placebo then topiramate (not the trial's names or order):
    week 12, participants. Placebo: P1 somewhat placebo, P2 don't know; topiramate: T1
    strongly topiramate, T2 somewhat placebo. By hand: Bang, placebo (0.5 + 0)/2 = 0.25,
    Var = (0.25 x 1/2 - 1/16)/2 = 1/32, SE 0.1768, CI -0.10 to 0.60; topiramate (1 - 0.5)/2
    = 0.25, Var = ((1 + 0.25)/2 - 1/16)/2 = 9/32, SE 0.5303, CI -0.79 to 1.29. James (three
    answers: placebo 1 right, 0 wrong, 1 don't know; topiramate 1 right, 1 wrong): N = 4,
    Pdk = 1/4, Pdo = 0.5 x 1/4 / (3/4) = 1/6, Pde = 0.5 x (2/4 x 2/4 + 1/4 x 1/4) / (3/4)^2
    = 5/18, Kd = -2/5, BI = (1 + 1/4 + 3/4 x -2/5)/2 = 19/40 = 0.475, printed 0.48."""
    rows = [
        guess("P1", "placebo", "somewhat"),
        guess("P2", "dont_know"),
        guess("T1", "topiramate", "strongly"),
        guess("T2", "placebo", "somewhat"),
    ]
    arm_of = {"P1": "placebo", "P2": "placebo", "T1": "topiramate", "T2": "topiramate"}
    section = blinding.closed_table(
        TITLE,
        rows,
        set(arm_of),
        set(),
        PROTOCOL_VISITS,
        ["placebo", "topiramate"],
        [("placebo", "Placebo"), ("topiramate", "Topiramate")],
        arm_of,
    )
    table = laid_out(section)
    assert table.rows[:10] == [
        "Respondent, visit / answer Placebo Topiramate Total",
        "Participant, Week 12",
        "Answers 2 2 4",
        "Strongly believes Placebo 0 0 0",
        "Somewhat believes Placebo 1 (50.0) 1 (50.0) 2 (50.0)",
        "Don't know 1 (50.0) 0 1 (25.0)",
        "Somewhat believes Topiramate 0 0 0",
        "Strongly believes Topiramate 0 1 (50.0) 1 (25.0)",
        "Bang's index (95% CI) 0.25 (-0.10 to 0.60) 0.25 (-0.79 to 1.29)",
        f"James' index (95% CI) 0.48 ({james_limits((1, 0, 1), (1, 1, 0))})",
    ]
    assert james_index(
        GuessTable(ThreeCategory(1, 0, 1), ThreeCategory(1, 1, 0))
    ).estimate == Fraction(19, 40)


def test_an_answer_of_a_participant_without_an_arm_is_refused():
    """Every answer must be counted in an arm: answers of participants the key does not hold
    stop the table, naming how many and the first of them."""
    rows = [guess("S01-001", "baclofen", "strongly"), guess("S01-007", "dont_know"),
            guess("S01-004", "placebo", "somewhat")]  # fmt: skip
    with pytest.raises(ValueError, match=r"^no arm for 2 participant\(s\), e\.g\. S01-004$"):
        blinding.guess_table(rows, {"S01-001": "baclofen"}, ["baclofen", "placebo"])


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_a_protocol_without_two_arms_gets_no_table_12_but_says_why(kind):
    """Three arms: the indices are defined for two, so the section says so under its title
    and computes nothing (nor the pooled answers, which name the first and second arm)."""
    arms = ["baclofen", "placebo", "topiramate"]
    rows = [guess("S01-001", "baclofen", "strongly")]
    if kind == "closed":
        labels = [(arm, arm.title()) for arm in arms]
        arm_of = {"S01-001": "baclofen"}
        args = (rows, {"S01-001"}, set(), PROTOCOL_VISITS, arms, labels, arm_of)
        section = blinding.closed_table(TITLE, *args)
    else:
        section = blinding.open_table(TITLE, rows, {"S01-001"}, set(), PROTOCOL_VISITS, arms)
    heading, paragraph, _, note = section[0]._content
    assert heading.text == TITLE
    assert paragraph.text == (
        "This table and its indices are defined for two arms (its answers name a first and a "
        "second arm); this protocol has 3."
    )
    assert paragraph.style is STYLES["body"]  # set as the report's body text, not reportlab's
    assert note.text == "Not computed."


def test_the_open_table_layout_and_its_note():
    """The open table: a header row, then per block (participant and investigator at week 12
    and at the end of treatment) its title in bold and seven rows indented (answers and the
    five answers); the columns fill the page's width; the note says what the pooled counts
    are and that the comparison by arm is in the closed report only."""
    rows = [guess("S01-001", "baclofen", "strongly"), guess("S01-002", "placebo", "somewhat")]
    table = laid_out(
        blinding.open_table(
            TITLE, rows, {"S01-001", "S01-002"}, set(), PROTOCOL_VISITS, ["baclofen", "placebo"]
        )
    )
    assert len(table.rows) == 1 + 4 * 7
    titles, others = block_rows(1, 7)
    assert table.bold == [0, *titles]  # the header row is bold too
    assert table.indented == others
    assert [table.rows[n] for n in titles] == [
        "Participant, Week 12",
        "Participant, End of treatment (week 24)",
        "Investigator, Week 12",
        "Investigator, End of treatment (week 24)",
    ]
    assert table.rows[2:8] == [
        "Answers 2",
        "Strongly believes active drug 1 (50.0)",
        "Somewhat believes active drug 0",
        "Don't know 0",
        "Somewhat believes control 1 (50.0)",
        "Strongly believes control 0",
    ]
    assert sum(table.widths) == pytest.approx(CONTENT_WIDTH)
    assert table.widths[0] == blinding.FIRST_WIDTH
    assert table.note[-1] == (
        "Pooled over arms: the answers of everyone together. Active drug and control: the "
        "answers naming the protocol's first and second arm. The guesses by true arm and the "
        "blinding indices (Bang's per arm, James' overall) compare the arms: they are in the "
        "closed report only."
    )


def test_the_closed_table_layout():
    """The closed table: per block its title in bold and nine rows indented (answers, the
    five answers, Bang's and James' index); three equal columns after the first fill the
    page's width."""
    rows = [guess("S01-001", "baclofen", "strongly"), guess("S01-002", "placebo", "somewhat")]
    arm_of = {"S01-001": "baclofen", "S01-002": "placebo"}
    table = laid_out(
        blinding.closed_table(
            TITLE,
            rows,
            set(arm_of),
            set(),
            PROTOCOL_VISITS,
            ["baclofen", "placebo"],
            [("baclofen", "Baclofen"), ("placebo", "Placebo")],
            arm_of,
        )
    )
    assert len(table.rows) == 1 + 4 * 9
    titles, others = block_rows(1, 9)
    assert table.bold == [0, *titles]
    assert table.indented == others
    first, *rest = table.widths
    assert first == blinding.FIRST_WIDTH and len(rest) == 3
    assert rest == [pytest.approx((CONTENT_WIDTH - blinding.FIRST_WIDTH) / 3)] * 3


def test_the_code_break_note_counts_answers_and_participants_in_words():
    """One answer of one participant (singular both), four of two (plural both); a broken
    code of someone not randomized, or of someone with no answer, adds nothing."""
    one = [guess("S01-003", "placebo", "strongly"), guess("S01-001", "dont_know")]
    note = blinding.code_break_note(one, {"S01-001", "S01-003"}, {"S01-003", "S01-009"})
    assert note == f"{blinding.CODE_BREAK_RULE}: 1 answer of 1 participant."
    three = [
        *one,
        guess("S01-003", "dont_know", respondent="investigator"),
        guess("S01-001", "baclofen", "somewhat", visit="end_of_treatment"),
        guess("S01-005", "baclofen", "strongly"),  # not randomized: never counted
    ]
    broken = {"S01-001", "S01-003", "S01-005"}
    note = blinding.code_break_note(three, {"S01-001", "S01-002", "S01-003"}, broken)
    assert note == f"{blinding.CODE_BREAK_RULE}: 4 answers of 2 participants."


def test_a_visit_the_protocol_no_longer_asks_at_keeps_its_answers_in_blocks_after():
    """Answers given at week 8 (a visit without the blinding form) and at a visit code the
    protocol does not know: each is a block of its own, after the visits that ask, in the
    order of their codes, titled by the visit's label or, with none, by its code."""
    rows = [
        guess("S01-001", "baclofen", "strongly", visit="week_8"),
        guess("S01-002", "dont_know", visit="unscheduled_3"),
        guess("S01-002", "dont_know", visit="week_12"),
    ]
    assert [b.title for b in blinding.blocks(PROTOCOL_VISITS, rows)] == [
        "Participant, Week 12",
        "Participant, End of treatment (week 24)",
        "Participant, unscheduled_3",
        "Participant, Week 8",
        "Investigator, Week 12",
        "Investigator, End of treatment (week 24)",
        "Investigator, unscheduled_3",
        "Investigator, Week 8",
    ]
    assert [(b.respondent, b.visit_code) for b in blinding.blocks(PROTOCOL_VISITS, rows)][:4] == [
        ("participant", "week_12"),
        ("participant", "end_of_treatment"),
        ("participant", "unscheduled_3"),
        ("participant", "week_8"),
    ]


def test_a_blocks_answers_are_its_respondents_at_its_visit_among_the_people_counted():
    rows = [
        guess("S01-004", "baclofen", "strongly"),
        guess("S01-001", "dont_know"),
        guess("S01-002", "placebo", "somewhat", respondent="investigator"),
        guess("S01-003", "placebo", "somewhat", visit="end_of_treatment"),
        guess("S01-009", "baclofen", "strongly"),  # not among the people counted
    ]
    block = blinding.Block("participant", "week_12", "Participant, Week 12")
    people = {"S01-001", "S01-002", "S01-003", "S01-004"}
    assert blinding.answers_of(rows, block, people) == [rows[1], rows[0]]  # by participant
