"""Every row of the DSMB safety tables against a count made by hand (issue 28, item 3).

The expected numbers below were counted by hand from the fixture, row by row, and are written
as literals; nothing here calls the engine to work out what to expect. The fixture is small
enough to recount on paper, and each event is there to make one rule matter:

    arm A: A1 A2 A3 A4           arm B: B1 B2 B3 B4          first dose 2026-03-01
    outside the safety population: X1 randomized, never dosed; X2 never randomized;
                                   X3 a first dose but no randomization

    E1  A1  Somnolence (Nervous)             g1  possible                          TEAE
    E2  A1  Somnolence                       g3  unlikely  serious, drug withdrawn TEAE
    E3  A1  Fall (Injury)                    g2  before the first dose: not a TEAE
    E4  A2  Nausea (GI)                      g2  not related                       TEAE
    E5  A2  Seizure (Nervous)                g4  definite  serious, interrupted    TEAE
    E6  A3  Suicidal ideation (Psychiatric)  g1  unlikely  serious                 TEAE
    E7  A3  "Strange dreams" (uncoded)       g1                                    TEAE
    A4  no event; final disposition: death
    E8  B1  Toxicity to various agents (Inj) g5  possible  serious, withdrawn, fatal TEAE
    E9  B1  "Strange  DREAMS" (uncoded)      g2  (the same verbatim term as E7)    TEAE
    E10 B1  "Tingling" (uncoded)             g1  (another term: a row of its own)  TEAE
    E11 B2  Alcohol withdrawal syndrome (Ps) g2                                    TEAE
    E12 B2  Dizziness (Nervous)              g1  probable; on the first-dose day   TEAE
    E13 B2  Dizziness                        g3                                    TEAE
    E14 B3  Headache (Nervous)               g1  the day before the first dose: not a TEAE
    E17 B4  Depressed mood (Psychiatric)     g2  unlikely                          TEAE
    E15 X1  Nausea g3 fatal; X1's disposition death  (outside: counted nowhere)
    E16 X2  Sedation g2                              (outside)
    E18 X3  Nausea g3 after X3's first dose          (outside, though dated like a TEAE)

Each relatedness level that counts (possible, probable, definite) is carried by a participant
with no other related event, so dropping any one level changes a count; likewise grade 3
exactly (E2, E13), a serious event of low grade (E6), an action other than withdrawal (E5), a
death by disposition only (A4) and one by fatal outcome only (B1).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from reports import counting as c
from reports.rows import AdverseEventRow, ParticipantRow
from tests.mutants import mutant, negative_control

DOSE = date(2026, 3, 1)
GI = "Gastrointestinal disorders"
INJURY = "Injury, poisoning and procedural complications"
NERVOUS = "Nervous system disorders"
PSYCH = "Psychiatric disorders"
ARM_OF = {"A1": "a", "A2": "a", "A3": "a", "A4": "a", "B1": "b", "B2": "b", "B3": "b", "B4": "b"}
LABELS = [("a", "A"), ("b", "B")]


def person(pid, *, randomized=True, dosed=True, disposition=None):
    return ParticipantRow(
        participant_id=pid,
        site="S01",
        sex="M",
        year_of_birth=1975,
        consent_date=date(2026, 2, 1),
        randomized_on=date(2026, 2, 27) if randomized else None,
        first_dose=DOSE if dosed else None,
        disposition=disposition,
    )


def event(pid, pt, soc, grade, day=5, term=None, **kw):
    """An AE ``day`` days after the first dose (0: on the day, negative: before)."""
    return AdverseEventRow(
        participant_id=pid,
        term=term or pt,
        preferred_term=pt,
        system_organ_class=soc,
        onset_date=DOSE + timedelta(days=day),
        grade=grade,
        **kw,
    )


PEOPLE = [
    person("A1"),
    person("A2"),
    person("A3"),
    person("A4", disposition="death"),
    person("B1"),
    person("B2"),
    person("B3"),
    person("B4"),
    person("X1", dosed=False, disposition="death"),
    person("X2", randomized=False, dosed=False),
    person("X3", randomized=False),
]
E = {
    1: event("A1", "Somnolence", NERVOUS, 1, day=1, relatedness="possible"),
    2: event("A1", "Somnolence", NERVOUS, 3, day=3, relatedness="unlikely", serious=True,
             seriousness_criteria=("hospitalisation",), action_taken="drug_withdrawn"),
    3: event("A1", "Fall", INJURY, 2, day=-2),
    4: event("A2", "Nausea", GI, 2),
    5: event("A2", "Seizure", NERVOUS, 4, relatedness="definite", serious=True,
             seriousness_criteria=("life_threatening",), action_taken="drug_interrupted",
             outcome="recovered_with_sequelae"),
    6: event("A3", "Suicidal ideation", PSYCH, 1, relatedness="unlikely", serious=True,
             seriousness_criteria=("other_important",)),
    7: event("A3", None, None, 1, term="Strange dreams"),
    8: event("B1", "Toxicity to various agents", INJURY, 5, relatedness="possible",
             serious=True, seriousness_criteria=("death",), action_taken="drug_withdrawn",
             outcome="fatal"),
    9: event("B1", None, None, 2, term=" Strange  DREAMS"),
    10: event("B1", None, None, 1, term="Tingling"),
    11: event("B2", "Alcohol withdrawal syndrome", PSYCH, 2),
    12: event("B2", "Dizziness", NERVOUS, 1, day=0, relatedness="probable"),
    13: event("B2", "Dizziness", NERVOUS, 3),
    14: event("B3", "Headache", NERVOUS, 1, day=-1),
    15: event("X1", "Nausea", GI, 3, outcome="fatal"),
    16: event("X2", "Sedation", NERVOUS, 2),
    17: event("B4", "Depressed mood", PSYCH, 2, relatedness="unlikely"),
    18: event("X3", "Nausea", GI, 3),
}  # fmt: skip
# Outsiders first and in between, so a count that stopped at the first outsider shows.
ORDER = [16, 18, 1, 2, 3, 15, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17]
EVENTS = [E[k] for k in ORDER]
# The treatment-emergent events by hand (onset on or after the first dose, dose recorded),
# X3's included: it is dated like one; only the population keeps it out of the counts.
TEAE_KEYS = [18, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17]


@pytest.fixture
def columns():
    return c.build_columns(c.safety_population(PEOPLE), ARM_OF, LABELS)


@pytest.fixture
def emergent():
    return c.treatment_emergent(EVENTS, c.first_doses(PEOPLE))


def test_the_population_and_the_columns(columns):
    assert c.safety_population(PEOPLE) == set(ARM_OF)
    assert [(col.key, col.label, sorted(col.members)) for col in columns] == [
        ("A", "A", ["A1", "A2", "A3", "A4"]),
        ("B", "B", ["B1", "B2", "B3", "B4"]),
        ("Total", "Total", sorted(ARM_OF)),
    ]
    assert [col.header for col in columns] == ["A\n(N=4)", "B\n(N=4)", "Total\n(N=8)"]
    (total,) = c.build_columns(c.safety_population(PEOPLE))
    assert (total.key, total.denominator) == ("Total", 8)


def test_treatment_emergence_by_hand(emergent):
    assert sorted(emergent, key=repr) == sorted((E[k] for k in TEAE_KEYS), key=repr)


# --- Table: AE overview ----------------------------------------------------------------------

OVERVIEW = [
    # label, participants (A, B, Total), events (A, B, Total)
    ("Any adverse event", (3, 4, 7), (7, 8, 15)),  # A1 E1-3, A2, A3; B1-B4 (B3: E14 only)
    ("Any treatment-emergent AE (TEAE)", (3, 3, 6), (6, 7, 13)),  # not E3, E14
    ("Related TEAE (possible, probable, definite)", (2, 2, 4), (2, 2, 4)),  # E1 E5 | E8 E12
    ("Serious TEAE", (3, 1, 4), (3, 1, 4)),  # E2 E5 E6 | E8
    ("TEAE of grade 3 or higher", (2, 2, 4), (2, 2, 4)),  # E2 E5 | E8 E13
    ("TEAE leading to discontinuation of study drug", (1, 1, 2), (1, 1, 2)),  # E2 | E8
    ("Deaths", (1, 1, 2), (0, 1, 1)),  # A4 by disposition | B1 by E8 (fatal)
]


def test_ae_overview_every_row(columns):
    rows = c.ae_overview(EVENTS, PEOPLE)
    table = [
        (row.label, tuple(row.n(col) for col in columns),
         tuple(row.event_count(col) for col in columns))
        for row in rows
    ]  # fmt: skip
    assert table == OVERVIEW


def test_ae_overview_printed_cells(columns):
    rows = {row.label: row for row in c.ae_overview(EVENTS, PEOPLE)}
    cells = [c.n_pct(rows["Deaths"].n(col), col.denominator) for col in columns]
    assert cells == ["1 (25.0)", "1 (25.0)", "2 (25.0)"]
    cells = [c.n_pct(rows["Any adverse event"].n(col), col.denominator) for col in columns]
    assert cells == ["3 (75.0)", "4 (100.0)", "7 (87.5)"]


# --- Table: worst grade ----------------------------------------------------------------------

WORST_GRADE = [
    ("No TEAE", (1, 1, 2)),  # A4, B3
    ("Grade 1 (mild)", (1, 0, 1)),  # A3 (E6 g1, E7 g1)
    ("Grade 2 (moderate)", (0, 1, 1)),  # B4
    ("Grade 3 (severe)", (1, 1, 2)),  # A1 (g1, g3), B2 (g2, g1, g3)
    ("Grade 4 (life-threatening)", (1, 0, 1)),  # A2 (g2, g4)
    ("Grade 5 (fatal)", (0, 1, 1)),  # B1 (g5, g2, g1)
]


def test_worst_grade_every_row(columns, emergent):
    rows = c.worst_grade_distribution(emergent, c.safety_population(PEOPLE))
    assert [(row.label, tuple(row.n(col) for col in columns)) for row in rows] == WORST_GRADE
    # every participant exactly once
    assert [sum(row[1][i] for row in WORST_GRADE) for i in range(3)] == [4, 4, 8]


# --- Table: incidence by organ class and preferred term --------------------------------------

ANY_TEAE = ("Any treatment-emergent AE", (3, 3, 6), (2, 2, 4), (6, 7, 13))
INCIDENCE = [
    # level, label, any grade (A, B, T), grade 3-5 (A, B, T), events (A, B, T)
    ("soc", GI, (1, 0, 1), (0, 0, 0), (1, 0, 1)),  # A2 E4 (not X1, X3)
    ("pt", "Nausea", (1, 0, 1), (0, 0, 0), (1, 0, 1)),
    ("soc", INJURY, (0, 1, 1), (0, 1, 1), (0, 1, 1)),  # B1 E8 (E3 before the dose)
    ("pt", "Toxicity to various agents", (0, 1, 1), (0, 1, 1), (0, 1, 1)),
    ("soc", NERVOUS, (2, 1, 3), (2, 1, 3), (3, 2, 5)),  # A1 worst 3, A2 4 | B2 worst 3
    ("pt", "Dizziness", (0, 1, 1), (0, 1, 1), (0, 2, 2)),  # one each: alphabetical
    ("pt", "Seizure", (1, 0, 1), (1, 0, 1), (1, 0, 1)),
    ("pt", "Somnolence", (1, 0, 1), (1, 0, 1), (2, 0, 2)),
    ("soc", PSYCH, (1, 2, 3), (0, 0, 0), (1, 2, 3)),  # A3 | B2, B4
    ("pt", "Alcohol withdrawal syndrome", (0, 1, 1), (0, 0, 0), (0, 1, 1)),
    ("pt", "Depressed mood", (0, 1, 1), (0, 0, 0), (0, 1, 1)),
    ("pt", "Suicidal ideation", (1, 0, 1), (0, 0, 0), (1, 0, 1)),
    # uncoded last; B1 once in the class although with two terms
    ("soc", c.UNCODED_SOC, (1, 1, 2), (0, 0, 0), (1, 2, 3)),
    # one term for two spellings; two participants beat one; the label is the smallest
    # spelling in code-point order, spaces collapsed ("Strange DREAMS" < "Strange dreams")
    ("pt", "Strange DREAMS", (1, 1, 2), (0, 0, 0), (1, 1, 2)),
    ("pt", "Tingling", (0, 1, 1), (0, 0, 0), (0, 1, 1)),
]


def incidence_line(row, columns):
    return (
        tuple(row.n(col) for col in columns),
        tuple(row.n(col, 3) for col in columns),
        tuple(row.event_count(col) for col in columns),
    )


def test_any_teae_row_at_the_worst_grade(columns, emergent):
    row = c.any_event_row(emergent, columns)
    assert (row.label, *incidence_line(row, columns)) == ANY_TEAE
    assert (row.level, row.system_organ_class) == ("any", "")
    assert row.worst == {"A1": 3, "A2": 4, "A3": 1, "B1": 5, "B2": 3, "B4": 2}


def test_incidence_every_row(columns, emergent):
    rows = c.incidence(emergent, columns)
    table = [(row.level, row.label, *incidence_line(row, columns)) for row in rows]
    assert table == INCIDENCE


def test_incidence_worst_grades_by_hand(columns, emergent):
    rows = {(row.level, row.label): row for row in c.incidence(emergent, columns)}
    assert rows[("soc", NERVOUS)].worst == {"A1": 3, "A2": 4, "B2": 3}
    assert rows[("pt", "Somnolence")].worst == {"A1": 3}
    assert rows[("pt", "Strange DREAMS")].worst == {"A3": 1, "B1": 2}
    assert rows[("soc", c.UNCODED_SOC)].worst == {"A3": 1, "B1": 2}
    for row in rows.values():
        assert row.system_organ_class == (
            row.label if row.level == "soc" else row.system_organ_class
        )


@pytest.mark.parametrize("position", range(len(TEAE_KEYS) + 1))
def test_an_outsider_anywhere_is_skipped_and_nothing_else(columns, emergent, position):
    """X3's event is skipped wherever it comes: every later event is still counted."""
    inside = [e for e in emergent if e.participant_id != "X3"]
    events = inside[:position] + [E[18]] + inside[position:]
    rows = c.incidence(events, columns)
    assert [(row.level, row.label, *incidence_line(row, columns)) for row in rows] == INCIDENCE
    row = c.any_event_row(events, columns)
    assert (row.label, *incidence_line(row, columns)) == ANY_TEAE


def test_the_order_of_terms_is_by_frequency_then_alphabet():
    """Within a class: more participants first; ties alphabetically, case-insensitive."""
    people = [person(f"P{i}") for i in range(4)]
    events = [
        event("P0", "zeta", NERVOUS, 1),
        event("P1", "Alpha", NERVOUS, 1),
        event("P2", "beta", NERVOUS, 1),
        event("P3", "beta", NERVOUS, 2),
        event("P0", "Gamma", "cardiac disorders", 1),
        event("P1", "x", "Blood disorders", 1),
        # classes and terms equal but for case: capitals first (code-point order breaks ties)
        event("P2", "y", "blood disorders", 1),
        event("P2", "Beta", NERVOUS, 1),
    ]
    columns = c.build_columns(c.safety_population(people))
    labels = [(row.level, row.label) for row in c.incidence(events, columns)]
    assert labels == [
        ("soc", "Blood disorders"),
        ("pt", "x"),
        ("soc", "blood disorders"),
        ("pt", "y"),
        ("soc", "cardiac disorders"),
        ("pt", "Gamma"),
        ("soc", NERVOUS),
        ("pt", "beta"),
        ("pt", "Alpha"),
        ("pt", "Beta"),
        ("pt", "zeta"),
    ]


# --- Table: adverse events of special interest -----------------------------------------------

SPECIAL = [
    # category, any grade (A, B, T), grade 3-5 (A, B, T)
    ("Sedation", (1, 0, 1), (1, 0, 1)),  # A1 Somnolence g1, g3 (X2's sedation: outside)
    ("Dizziness", (0, 1, 1), (0, 1, 1)),  # B2 g1, g3
    ("Confusion", (0, 0, 0), (0, 0, 0)),
    ("Falls", (0, 0, 0), (0, 0, 0)),  # A1's fall was before the first dose
    ("Seizures", (1, 0, 1), (1, 0, 1)),  # A2 g4
    ("Depression and suicidality", (1, 1, 2), (0, 0, 0)),  # A3 g1 | B4 g2
    ("Overdose", (0, 1, 1), (0, 1, 1)),  # B1 toxicity g5
    ("Withdrawal", (0, 1, 1), (0, 0, 0)),  # B2 g2
]


def test_special_interest_every_row(columns, emergent):
    rows = c.special_interest(emergent)
    table = [
        (anyg.label, tuple(anyg.n(col) for col in columns), tuple(severe.n(col) for col in columns))
        for anyg, severe in rows
    ]  # fmt: skip
    assert table == SPECIAL
    assert all(anyg.label == severe.label for anyg, severe in rows)


# The categories of DESIGN section 5 and their MedDRA preferred terms, written out again here
# (not read from the module) so that a term dropped from the module is noticed.
SPECIAL_TERMS = {
    "Sedation": ["Sedation", "Somnolence", "Hypersomnia", "Lethargy",
                 "Depressed level of consciousness", "Loss of consciousness"],
    "Dizziness": ["Dizziness", "Dizziness postural", "Vertigo"],
    "Confusion": ["Confusional state", "Disorientation", "Delirium"],
    "Falls": ["Fall"],
    "Seizures": ["Seizure", "Generalised tonic-clonic seizure", "Status epilepticus"],
    "Depression and suicidality": ["Depression", "Depressed mood", "Suicidal ideation",
                                   "Suicidal behaviour", "Suicide attempt"],
    "Overdose": ["Overdose", "Accidental overdose", "Intentional overdose",
                 "Toxicity to various agents"],
    "Withdrawal": ["Drug withdrawal syndrome", "Alcohol withdrawal syndrome",
                   "Delirium tremens"],
}  # fmt: skip
ALL_TERMS = [(category, term) for category, terms in SPECIAL_TERMS.items() for term in terms]


def test_the_special_interest_categories_are_the_designs():
    assert list(c.SPECIAL_INTEREST) == list(SPECIAL_TERMS)
    assert {k: list(v) for k, v in c.SPECIAL_INTEREST.items()} == SPECIAL_TERMS


@pytest.mark.parametrize(("category", "term"), ALL_TERMS)
def test_every_special_interest_term_counts_in_its_category_only(category, term):
    """One participant with the term (in another case) at grade 3, one at grade 1."""
    events = [
        event("P1", term.upper(), NERVOUS, 3),
        event("P2", term.lower(), NERVOUS, 1),
        event("P3", "Headache", NERVOUS, 4),  # not of special interest
    ]
    for anyg, severe in c.special_interest(events):
        if anyg.label == category:
            assert (anyg.participants, severe.participants) == ({"P1", "P2"}, {"P1"}), term
            assert dict(anyg.events) == {"P1": 1, "P2": 1}
        else:
            assert (anyg.participants, severe.participants) == (set(), set()), (category, term)


# --- formatting and the risk difference ------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "tenths"),
    [(0, 7, 0), (1, 3, 333), (2, 3, 667), (1, 8, 125), (1, 16, 63), (1, 1, 1000),
     (1, 2000, 1), (1, 2001, 0), (999, 1000, 999), (1, 6, 167), (5, 6, 833)],
)  # fmt: skip
def test_percent_in_tenths_by_hand(n, d, tenths):
    assert c.percent_tenths(n, d) == tenths
    assert c.format_percent(n, d) == f"{tenths // 10}.{tenths % 10}"


@pytest.mark.parametrize(
    ("n", "d", "shown"),
    [(0, 0, "0"), (0, 9, "0"), (3, 0, "0"), (9, 9, "9 (100.0)"), (1, 1000, "1 (0.1)"),
     (1, 2001, "1 (0.0)"), (1, 7, "1 (14.3)")],
)  # fmt: skip
def test_n_pct_edges(n, d, shown):
    assert c.n_pct(n, d) == shown


def wilson_by_bisection(x: int, n: int, z: float = c.Z95) -> tuple[float, float]:
    """The Wilson score interval as the set of p whose score statistic is within z: found by
    bisection on |x - n p| = z sqrt(n p (1 - p)), not by the closed form."""

    def inside(p):
        return abs(x - n * p) <= z * math.sqrt(n * p * (1 - p))

    def edge(lo, hi):  # lo inside, hi outside (or the reverse)
        for _ in range(200):
            mid = (lo + hi) / 2
            if inside(mid) == inside(lo):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    p = x / n
    lower = 0.0 if x == 0 else edge(p, 0.0)
    upper = 1.0 if x == n else edge(p, 1.0)
    return lower, upper


@pytest.mark.parametrize(
    ("x", "n"),
    [(0, 10), (1, 10), (5, 10), (10, 10), (0, 1), (1, 1), (3, 7), (56, 70), (16, 16), (0, 21)],
)
def test_wilson_against_bisection(x, n):
    low, high = c.wilson(x, n)
    ref_low, ref_high = wilson_by_bisection(x, n)
    assert low == pytest.approx(ref_low, abs=1e-9) and high == pytest.approx(ref_high, abs=1e-9)
    # within [0, 1] and around x / n (to the last bit: 10/10 gives an upper 1 - 2**-53)
    assert 0.0 <= low <= x / n + 1e-12 and x / n <= high + 1e-12 and high <= 1.0


def test_wilson_is_clipped_to_zero_and_one():
    """In floats the closed form can step a hair outside [0, 1]: 16/16 gives an upper bound
    of 1.0000000000000002 and 0/21 a lower bound of -1.4e-17 before clipping."""
    assert c.wilson(16, 16)[1] == 1.0
    assert c.wilson(0, 21)[0] == 0.0


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "published"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10
        (56, 70, 48, 80, (0.2000, 0.0524, 0.3339)),
        (0, 10, 0, 20, (0.0, -0.1611, 0.2775)),
        (0, 10, 0, 10, (0.0, -0.2775, 0.2775)),
    ],
)
def test_risk_difference_published_values(x1, n1, x2, n2, published):
    assert tuple(round(v, 4) for v in c.risk_difference(x1, n1, x2, n2)) == published


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(3, 7, 1, 9), (0, 5, 5, 5), (5, 5, 0, 5), (2, 2, 1, 3), (0, 1, 1, 1), (7, 40, 12, 38)],
)
def test_risk_difference_is_newcombes_hybrid_from_independent_wilson(x1, n1, x2, n2):
    l1, u1 = wilson_by_bisection(x1, n1)
    l2, u2 = wilson_by_bisection(x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    expected = (
        p1 - p2,
        p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )
    assert c.risk_difference(x1, n1, x2, n2) == pytest.approx(expected, abs=1e-9)
    # swapping the arms mirrors the interval
    d, low, high = c.risk_difference(x2, n2, x1, n1)
    assert (d, low, high) == pytest.approx((-expected[0], -expected[2], -expected[1]), abs=1e-9)


@pytest.mark.parametrize(("n1", "n2"), [(0, 5), (5, 0), (0, 0)])
def test_risk_difference_of_an_empty_arm_is_none(n1, n2):
    assert c.risk_difference(0, n1, 0, n2) is None


def test_the_rules_are_stated():
    """The footnotes carry the counting rules the tables apply."""
    assert "half up to one decimal" in c.PERCENT_RULE
    assert "randomized with a recorded first dose" in c.DENOMINATOR_RULE
    assert "worst grade" in c.INCIDENCE_RULE and "uncoded" in c.INCIDENCE_RULE
    assert c.RELATED == ("possible", "probable", "definite")


# --- negative controls: the hand counts catch the mutants the issue lists --------------------

MUTANTS = {
    # name: (function, text, replacement)
    "Any TEAE at the lowest grade": ("any_event_row", "worst[pid] = max(", "worst[pid] = min("),
    "worst-grade table at the lowest grade": ("worst_grade_distribution", "= max(", "= min("),
    "incidence at the lowest grade": ("incidence", "worst[pid] = max(", "worst[pid] = min("),
    "Any TEAE row emptied": ("any_event_row", "if event.participant_id in", "if None in"),
    "Any TEAE events counted once": ("any_event_row", "events[pid] += 1", "events[pid] = 1"),
    "incidence stops at the first outsider": ("incidence", "continue", "break"),
    "uncoded terms merged": ("incidence", "_normal(event.term)", "''"),
    "deaths without fatal outcomes": ("ae_overview", 'e.outcome == "fatal"', "False"),
    "deaths without dispositions": ("ae_overview", 'p.disposition == "death"', "False"),
    "grade 3 exclusive": ("ae_overview", "e.grade >= 3", "e.grade > 3"),
    "any AE = TEAE": (
        "ae_overview",
        '("Any adverse event", events)',
        '("Any adverse event", emergent)',
    ),
}


@negative_control
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_negative_control_each_mutant_fails_a_hand_count(monkeypatch, columns, name):
    function, old, new = MUTANTS[name]
    monkeypatch.setattr(c, function, mutant(c, function, old, new))
    emergent = c.treatment_emergent(EVENTS, c.first_doses(PEOPLE))
    checks = [
        lambda: test_ae_overview_every_row(columns),
        lambda: test_worst_grade_every_row(columns, emergent),
        lambda: test_any_teae_row_at_the_worst_grade(columns, emergent),
        lambda: test_incidence_every_row(columns, emergent),
    ]
    caught = 0
    for check in checks:
        try:
            check()
        except AssertionError:
            caught += 1
    assert caught, name


@negative_control
@pytest.mark.parametrize("level", c.RELATED)
def test_negative_control_each_related_level_matters(monkeypatch, columns, level):
    monkeypatch.setattr(c, "RELATED", tuple(r for r in c.RELATED if r != level))
    with pytest.raises(AssertionError):
        test_ae_overview_every_row(columns)


@negative_control
@pytest.mark.parametrize(("category", "term"), ALL_TERMS)
def test_negative_control_each_special_term_matters(monkeypatch, category, term):
    trimmed = {k: tuple(t for t in v if t != term) for k, v in c.SPECIAL_INTEREST.items()}
    monkeypatch.setattr(c, "SPECIAL_INTEREST", trimmed)
    with pytest.raises(AssertionError):
        test_the_special_interest_categories_are_the_designs()
    with pytest.raises(AssertionError):
        test_every_special_interest_term_counts_in_its_category_only(category, term)


@negative_control
@pytest.mark.parametrize(("old", "new"), [("min(1.0,", "min(2.0,"), ("max(0.0,", "max(-1.0,")])
def test_negative_control_an_unclipped_wilson_is_caught(monkeypatch, old, new):
    monkeypatch.setattr(c, "wilson", mutant(c, "wilson", old, new))
    with pytest.raises(AssertionError):
        test_wilson_is_clipped_to_zero_and_one()
