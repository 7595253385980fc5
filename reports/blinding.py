"""The blinding assessment in the safety reports: guesses of the arm, and their indices.

One block per respondent (participant, investigator) and per visit that asks for the guess
(the protocol's visits whose forms include "blinding": week 12 and the end of treatment by
default). The closed report counts each answer by true arm, with Bang's index per arm and
James' index for the block (``reports.blinding_index``, the engine); the open report counts
the answers of all arms together and shows no index (an index by arm would unblind, and
James' index is computed from the guesses by arm).

Counted (``COUNTING_RULE``, printed under the table): the answers of randomized participants
as they stood at the data cut-off (``reports.data``: recorded by then, later corrections
undone, answers entered in error left out), each with the visit it was given at, dated
by that visit; one answer per respondent per visit (the capture form and a unique
index allow no second). Every answer of a participant whose code was broken in an emergency
by the cut-off is left out (an answer after the break may rest on it; the bundle flags the
participant, not the time, so the whole participant goes, which an outside checker can
redo), and the footnote says how many.

Arms: Bang's and James' "active" and "control" are the protocol's first and second arm (the
indices are symmetric in the two, so the choice changes no number). In a coded closed
report a guess is printed by the code of the arm it names (a guess of baclofen in a report
where baclofen is B is "believes B"), so the report prints no arm name next to a code.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from reportlab.platypus import Paragraph

from reports import blinding_bang, blinding_guesses, blinding_interval, blinding_james
from reports import blinding_index as bi
from reports import counting as c
from reports import tables as t
from reports.blinding_guesses import DONT_KNOW, SOMEWHAT, STRONGLY
from reports.layout import CONTENT_WIDTH, STYLES
from reports.rows import BlindingRow

RESPONDENTS = (("participant", "Participant"), ("investigator", "Investigator"))

COUNTING_RULE = (
    "Answers counted: those of randomized participants as they stood at the data cut-off "
    "(recorded by then, later corrections undone, answers entered in error left out), each "
    "with the visit it was given at and dated by that visit; one answer per "
    "respondent per visit (the form takes no second). Respondent: the participant, or the "
    "assessing investigator. n (%): answers, percentage of the block's answers in the column, "
    "rounded half up to one decimal; a count of zero is shown as 0."
)
CODE_BREAK_RULE = (
    "Left out: every answer of a participant whose code was broken in an emergency by the "
    "cut-off (Listing 4; the bundle's unblinded_by_code_break), before the code-break or after "
    "it"
)
INDEX_RULE = (
    "Bang's index uses the five answers with the weights of Bang 2004 (the form records "
    "strongly or somewhat for every guess), in each arm's column; James' index, in the Total "
    "column, is computed on the three-answer table (strongly and somewhat together), as "
    "Bang 2004 does. Indices and limits rounded half away from zero to two decimals. n/a: "
    "undefined (no answer in the arm, or every answer don't know); no CI: a variance of 0, "
    "so no normal-approximation interval (e.g. every guess right, or every answer don't "
    "know for James' index)."
)


@dataclass(frozen=True)
class Block:
    respondent: str  # participant or investigator
    visit_code: str
    title: str  # "Participant, Week 12"


def blocks(visit_definitions, rows: Iterable[BlindingRow]) -> list[Block]:
    """Each respondent at each visit that asks for the guess, in protocol order; a visit with
    answers the protocol no longer asks for is shown too, after them, never dropped."""
    asked = [v for v in visit_definitions if "blinding" in v.forms]
    codes = {v.code for v in asked}
    seen = {row.visit_code for row in rows}
    extra = sorted(seen - codes)
    labels = {v.code: v.label for v in visit_definitions}
    visits = [(v.code, v.label) for v in asked] + [(code, labels.get(code, code)) for code in extra]
    return [
        Block(respondent, code, f"{name}, {label}")
        for respondent, name in RESPONDENTS
        for code, label in visits
    ]


def answers_of(rows: Iterable[BlindingRow], block: Block, people: set[str]) -> list[BlindingRow]:
    """The block's answers of ``people`` (the randomized participants), in a fixed order."""
    return sorted(
        (
            r
            for r in rows
            if r.respondent == block.respondent
            and r.visit_code == block.visit_code
            and r.participant_id in people
        ),
        key=lambda r: r.participant_id,
    )


def answer_key(row: BlindingRow) -> tuple[str, str | None]:
    """(guess, confidence): ("baclofen", "strongly"), ..., ("dont_know", None)."""
    if row.guess == DONT_KNOW:
        return (DONT_KNOW, None)
    return (row.guess, row.confidence)


def answer_order(arms: Sequence[str]) -> list[tuple[str, str | None]]:
    """The five answers, from strongly believing ``arms[0]`` to strongly believing
    ``arms[1]``, don't know in the middle."""
    first, second = arms
    return [
        (first, STRONGLY),
        (first, SOMEWHAT),
        (DONT_KNOW, None),
        (second, SOMEWHAT),
        (second, STRONGLY),
    ]


def answer_label(key: tuple[str, str | None], name_of: Mapping[str, str]) -> str:
    guess, confidence = key
    if guess == DONT_KNOW:
        return "Don't know"
    return f"{confidence.capitalize()} believes {name_of[guess]}"


def pooled_counts(answers: Iterable[BlindingRow]) -> Counter:
    """Answers of all arms together, by (guess, confidence)."""
    return Counter(answer_key(r) for r in answers)


def guess_table(answers: Iterable[BlindingRow], arm_of: Mapping[str, str], arms: Sequence[str]):
    """The five-answer table by true arm (``arms[0]`` active, ``arms[1]`` control)."""
    missing = sorted({r.participant_id for r in answers if r.participant_id not in arm_of})
    if missing:
        raise ValueError(f"no arm for {len(missing)} participant(s), e.g. {missing[0]}")
    return blinding_guesses.tally(
        ((arm_of[r.participant_id], r.guess, r.confidence) for r in answers),
        active=arms[0],
        control=arms[1],
        five_category=True,
    )


def arm_counts(table: blinding_guesses.GuessTable, arm: str, arms: Sequence[str]) -> dict:
    """One arm's answers by (guess, confidence), from a five-answer table."""
    first, second = arms
    g = table.active if arm == first else table.control
    return {
        (first, STRONGLY): g.strongly_active,
        (first, SOMEWHAT): g.somewhat_active,
        (DONT_KNOW, None): g.dont_know,
        (second, SOMEWHAT): g.somewhat_control,
        (second, STRONGLY): g.strongly_control,
    }


# --- formatting ---------------------------------------------------------------------------


def round2(value: Fraction | float) -> str:
    """Two decimals, half away from zero, of the exact value (a float's exact binary value)."""
    x = Fraction(value)
    hundredths = math.floor(abs(x) * 100 + Fraction(1, 2))
    sign = "-" if x < 0 and hundredths else ""
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d}"


def index_text(result: blinding_interval.IndexResult) -> str:
    """``0.25 (0.10 to 0.40)``; ``n/a`` when undefined; ``(no CI)`` when no interval."""
    if result.estimate is None:
        return "n/a"
    if result.lower is None or result.upper is None:
        return f"{round2(result.estimate)} (no CI)"
    return f"{round2(result.estimate)} ({round2(result.lower)} to {round2(result.upper)})"


# --- the tables ---------------------------------------------------------------------------

FIRST_WIDTH = 190


def _spec(header: list[str], body: list[list[str]], bold: list[int], indent: list[int]):
    width = (CONTENT_WIDTH - FIRST_WIDTH) / (len(header) - 1)
    return t.table(
        [header],
        body,
        [FIRST_WIDTH] + [width] * (len(header) - 1),
        bold_rows=bold,
        indent_rows=indent,
    )


def code_break_note(rows: Sequence[BlindingRow], people: set[str], broken: set[str]) -> str:
    """The code-break rule with the number of answers it leaves out."""
    left_out = [r for r in rows if r.participant_id in people and r.participant_id in broken]
    who = len({r.participant_id for r in left_out})
    return (
        f"{CODE_BREAK_RULE}: {len(left_out)} answer{'' if len(left_out) == 1 else 's'} of "
        f"{who} participant{'' if who == 1 else 's'}."
    )


def closed_table(
    title: str,
    rows: Sequence[BlindingRow],
    randomized: set[str],
    broken: set[str],
    visit_definitions,
    arms: Sequence[str],
    labels: Sequence[tuple[str, str]],
    arm_of: Mapping[str, str],
) -> list:
    """Guesses by true arm, per respondent and visit, with Bang's index per arm and James'
    index overall. ``labels``: (arm, printed label) in the report's column order;
    ``broken``: participants whose code was broken by the cut-off (left out)."""
    people = randomized - broken
    if len(arms) != 2:
        return _not_two_arms(title, arms)
    name_of = dict(labels)
    ordered = [arm for arm, _ in labels]
    header = ["Respondent, visit / answer", *(label for _, label in labels), c.TOTAL]
    body, bold, indent = [], [], []
    for block in blocks(visit_definitions, rows):
        answers = answers_of(rows, block, people)
        table = guess_table(answers, arm_of, arms)
        per_arm = {arm: arm_counts(table, arm, arms) for arm in ordered}
        totals = {arm: sum(per_arm[arm].values()) for arm in ordered}
        everyone = sum(totals.values())
        bold.append(len(body) + 1)
        body.append([block.title] + [""] * (len(ordered) + 1))
        indent.append(len(body) + 1)
        body.append(["Answers", *(str(totals[arm]) for arm in ordered), str(everyone)])
        for key in answer_order(ordered):
            cells = [c.n_pct(per_arm[arm][key], totals[arm]) for arm in ordered]
            pooled = sum(per_arm[arm][key] for arm in ordered)
            indent.append(len(body) + 1)
            body.append([answer_label(key, name_of), *cells, c.n_pct(pooled, everyone)])
        indices = bi.blinding_indices(table)
        bang = {arms[0]: indices.bang_active, arms[1]: indices.bang_control}
        indent.append(len(body) + 1)
        body.append(["Bang's index (95% CI)", *(index_text(bang[arm]) for arm in ordered), ""])
        indent.append(len(body) + 1)
        body.append(["James' index (95% CI)", *([""] * len(ordered)), index_text(indices.james)])
    return t.section(
        title,
        _spec(header, body, bold, indent),
        COUNTING_RULE,
        code_break_note(rows, randomized, broken),
        INDEX_RULE,
        blinding_bang.BANG_FORMULA,
        blinding_james.JAMES_FORMULA,
    )


def open_table(
    title: str,
    rows: Sequence[BlindingRow],
    randomized: set[str],
    broken: set[str],
    visit_definitions,
    arms,
) -> list:
    """The answers of all arms together, per respondent and visit: no arm, no index."""
    people = randomized - broken
    if len(arms) != 2:
        return _not_two_arms(title, arms)
    name_of = {arms[0]: "active drug", arms[1]: "control"}
    body, bold, indent = [], [], []
    for block in blocks(visit_definitions, rows):
        counts = pooled_counts(answers_of(rows, block, people))
        everyone = sum(counts.values())
        bold.append(len(body) + 1)
        body.append([block.title, ""])
        indent.append(len(body) + 1)
        body.append(["Answers", str(everyone)])
        for key in answer_order(arms):
            indent.append(len(body) + 1)
            body.append([answer_label(key, name_of), c.n_pct(counts[key], everyone)])
    return t.section(
        title,
        _spec(["Respondent, visit / answer", c.TOTAL], body, bold, indent),
        COUNTING_RULE,
        code_break_note(rows, randomized, broken),
        "Pooled over arms: the answers of everyone together. Active drug and control: the "
        "answers naming the protocol's first and second arm. The guesses by true arm and the "
        "blinding indices (Bang's per arm, James' overall) compare the arms: they are in the "
        "closed report only.",
    )


def _not_two_arms(title: str, arms) -> list:
    return t.section(
        title,
        Paragraph(
            "This table and its indices are defined for two arms (its answers name a first "
            f"and a second arm); this protocol has {len(arms)}.",
            STYLES["body"],
        ),
        "Not computed.",
    )
