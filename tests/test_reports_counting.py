"""The counting engine against small hand-computed fixtures (no database, no PDF).

The fixture, worked out by hand (first dose 2026-01-10 for P1-P5):

    arm A: P1, P2, P3      arm B: P4, P5      P6 randomized, never dosed; P7 screened only
    P1  Somnolence g1, g3, g2 (three events, worst 3); Dizziness g2
    P2  Dizziness g1; Nausea g2; Hypertension g1
    P3  no event
    P4  Somnolence g2; Headache g4 on 2026-01-05, before the first dose (not emergent)
    P5  Somnolence g1; "Funny feeling" g1 and " funny  FEELING" g2 (uncoded, one term)
    P6  Nausea g3 (not in the safety population: counted nowhere)
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta

import pytest

from reports import counting as c
from reports import liver
from reports.rows import AdverseEventRow, LabRow, ParticipantRow

DOSE = date(2026, 1, 10)
NERVOUS = "Nervous system disorders"
GI = "Gastrointestinal disorders"
VASCULAR = "Vascular disorders"
ARM_OF = {"P1": "x", "P2": "x", "P3": "x", "P4": "y", "P5": "y", "P6": "y"}
LABELS = [("x", "A"), ("y", "B")]


def person(pid, dosed=True, randomized=True, **kw):
    return ParticipantRow(
        participant_id=pid,
        site="S01",
        sex="F",
        year_of_birth=1980,
        consent_date=date(2026, 1, 1),
        randomized_on=date(2026, 1, 9) if randomized else None,
        first_dose=DOSE if dosed and randomized else None,
        **kw,
    )


def ae(pid, pt, soc, grade, day=12, term=None, **kw):
    return AdverseEventRow(
        participant_id=pid,
        term=term or (pt or "?"),
        preferred_term=pt,
        system_organ_class=soc,
        onset_date=date(2026, 1, day),
        grade=grade,
        **kw,
    )


PEOPLE = [
    person("P1"),
    person("P2"),
    person("P3"),
    person("P4"),
    person("P5", disposition="death"),
    person("P6", dosed=False),
    person("P7", randomized=False),
]
EVENTS = [
    ae("P1", "Somnolence", NERVOUS, 1, day=11, relatedness="probable"),
    ae("P1", "Somnolence", NERVOUS, 3, day=14, serious=True, seriousness_criteria=("other",)),
    ae("P1", "Somnolence", NERVOUS, 2, day=20),
    ae("P1", "Dizziness", NERVOUS, 2),
    ae("P2", "Dizziness", NERVOUS, 1, day=10),  # on the day of the first dose: emergent
    ae("P2", "Nausea", GI, 2, action_taken="drug_withdrawn"),
    ae("P2", "Hypertension", VASCULAR, 1),
    ae("P4", "Somnolence", NERVOUS, 2),
    ae("P4", "Headache", NERVOUS, 4, day=5),  # before the first dose
    ae("P5", "Somnolence", NERVOUS, 1),
    ae("P5", None, None, 1, term="Funny feeling"),
    ae("P5", None, None, 2, term=" funny  FEELING"),
    ae("P6", "Nausea", GI, 3),
]


@pytest.fixture
def columns():
    return c.build_columns(c.safety_population(PEOPLE), ARM_OF, LABELS)


def cells(row, columns, min_grade=1):
    return [c.n_pct(row.n(col, min_grade), col.denominator) for col in columns]


def test_safety_population_and_denominators(columns):
    assert c.safety_population(PEOPLE) == {"P1", "P2", "P3", "P4", "P5"}
    assert [(col.key, col.denominator) for col in columns] == [("A", 3), ("B", 2), ("Total", 5)]
    assert columns[0].header == "A\n(N=3)"
    with pytest.raises(ValueError, match="no arm"):
        c.build_columns({"P1", "P9"}, ARM_OF, LABELS)


def test_incidence_table_matches_the_hand_count(columns):
    emergent = c.treatment_emergent(EVENTS, c.first_doses(PEOPLE))
    assert all(e.participant_id != "P4" or e.preferred_term != "Headache" for e in emergent)
    rows = c.incidence(emergent, columns)
    table = [(row.level, row.label, cells(row, columns), cells(row, columns, 3)) for row in rows]
    assert table == [
        ("soc", GI, ["1 (33.3)", "0", "1 (20.0)"], ["0", "0", "0"]),
        ("pt", "Nausea", ["1 (33.3)", "0", "1 (20.0)"], ["0", "0", "0"]),
        # P1 (worst 3), P2, P4, P5: once each although P1 has four events here
        ("soc", NERVOUS, ["2 (66.7)", "2 (100.0)", "4 (80.0)"], ["1 (33.3)", "0", "1 (20.0)"]),
        # three participants beat two: frequency before the alphabet
        ("pt", "Somnolence", ["1 (33.3)", "2 (100.0)", "3 (60.0)"], ["1 (33.3)", "0", "1 (20.0)"]),
        ("pt", "Dizziness", ["2 (66.7)", "0", "2 (40.0)"], ["0", "0", "0"]),
        ("soc", VASCULAR, ["1 (33.3)", "0", "1 (20.0)"], ["0", "0", "0"]),
        ("pt", "Hypertension", ["1 (33.3)", "0", "1 (20.0)"], ["0", "0", "0"]),
        # uncoded last, whatever the alphabet; two spellings are one term, worst grade 2
        ("soc", c.UNCODED_SOC, ["0", "1 (50.0)", "1 (20.0)"], ["0", "0", "0"]),
        ("pt", "Funny feeling", ["0", "1 (50.0)", "1 (20.0)"], ["0", "0", "0"]),
    ]
    somnolence = rows[3]
    assert somnolence.worst == {"P1": 3, "P4": 2, "P5": 1}
    assert [somnolence.event_count(col) for col in columns] == [3, 2, 5]
    assert rows[8].worst == {"P5": 2}
    # P6's nausea (never dosed) is nowhere, not even in the total
    assert "P6" not in rows[0].worst


def test_ae_overview(columns):
    overview = {row.label: row for row in c.ae_overview(EVENTS, PEOPLE)}
    counts = {label: [row.n(col) for col in columns] for label, row in overview.items()}
    events = {label: [row.event_count(col) for col in columns] for label, row in overview.items()}
    assert counts == {
        "Any adverse event": [2, 2, 4],
        "Any treatment-emergent AE (TEAE)": [2, 2, 4],
        "Related TEAE (possible, probable, definite)": [1, 0, 1],
        "Serious TEAE": [1, 0, 1],
        "TEAE of grade 3 or higher": [1, 0, 1],
        "TEAE leading to discontinuation of study drug": [1, 0, 1],
        "Deaths": [0, 1, 1],
    }
    # 12 events in the safety population, one of them (P4's headache) before the first dose
    assert events["Any adverse event"] == [7, 5, 12]
    assert events["Any treatment-emergent AE (TEAE)"] == [7, 4, 11]


def test_worst_grade_distribution_counts_everyone_once(columns):
    emergent = c.treatment_emergent(EVENTS, c.first_doses(PEOPLE))
    rows = c.worst_grade_distribution(emergent, c.safety_population(PEOPLE))
    table = {row.label: [row.n(col) for col in columns] for row in rows}
    assert table == {
        "No TEAE": [1, 0, 1],
        "Grade 1 (mild)": [0, 0, 0],
        "Grade 2 (moderate)": [1, 2, 3],  # P2 (worst 2), P4 (headache g4 not emergent), P5
        "Grade 3 (severe)": [1, 0, 1],
        "Grade 4 (life-threatening)": [0, 0, 0],
        "Grade 5 (fatal)": [0, 0, 0],
    }
    assert [sum(col) for col in zip(*table.values(), strict=True)] == [3, 2, 5]


def test_special_interest(columns):
    emergent = c.treatment_emergent(EVENTS, c.first_doses(PEOPLE))
    rows = {
        any_grade.label: (any_grade, severe) for any_grade, severe in c.special_interest(emergent)
    }
    sedation, severe = rows["Sedation"]
    assert [sedation.n(col) for col in columns] == [1, 2, 3]
    assert [severe.n(col) for col in columns] == [1, 0, 1]
    assert [rows["Dizziness"][0].n(col) for col in columns] == [2, 0, 2]
    assert rows["Seizures"][0].participants == set()


@pytest.mark.parametrize(
    "n, d, shown",
    [
        (0, 5, "0"),
        (0, 0, "0"),
        (1, 8, "1 (12.5)"),
        (1, 16, "1 (6.3)"),  # 6.25: half up, not to even
        (3, 16, "3 (18.8)"),  # 18.75
        (1, 80, "1 (1.3)"),  # 1.25
        (1, 400, "1 (0.3)"),  # 0.25
        (7, 2000, "7 (0.4)"),  # 0.35: round(0.35, 1) == 0.3 in floats
        (29, 2000, "29 (1.5)"),  # 1.45: round(1.45, 1) == 1.4 in floats
        (1, 3, "1 (33.3)"),
        (2, 3, "2 (66.7)"),
        (5, 5, "5 (100.0)"),
        (1, 2001, "1 (0.0)"),
    ],
)
def test_n_pct_rounds_half_up(n, d, shown):
    assert c.n_pct(n, d) == shown


def test_the_float_boundaries_are_real():
    """Negative control: naive float rounding gets the .x5 cases above wrong."""
    assert round(100 * 7 / 2000, 1) == 0.3 and round(100 * 29 / 2000, 1) == 1.4
    assert round(6.25, 1) == 6.2


def test_open_columns_are_the_total_only():
    (total,) = c.build_columns(c.safety_population(PEOPLE))
    assert total.key == c.TOTAL and total.denominator == 5


def test_liver_findings():
    first = {"P1": DOSE, "P2": DOSE, "P3": None}
    labs = [
        LabRow("P1", date(2026, 1, 5), "ALT", 400, 40),  # before the dose: ignored
        LabRow("P1", date(2026, 2, 1), "ALT", 130, 40),  # 3.25 x
        LabRow("P1", date(2026, 2, 1), "bilirubin", 50, 20),  # 2.5 x, same visit: Hy's law
        LabRow("P2", date(2026, 2, 1), "AST", 120, 40),  # exactly 3 x: not above
        LabRow("P2", date(2026, 3, 1), "bilirubin", 45, 20),
        LabRow("P3", date(2026, 2, 1), "ALT", 400, 40),  # never dosed
    ]
    findings = liver.liver_findings(labs, first)
    assert findings["P1"].peak == {"ALT": 3.25, "bilirubin": 2.5}
    assert findings["P1"].hys_law_date == date(2026, 2, 1)
    assert findings["P2"].hys_law_date is None and "P3" not in findings
    summary = {row.label: row.participants for row in liver.liver_summary(findings)}
    assert summary["ALT or AST > 3 x ULN"] == {"P1"}
    assert summary["Total bilirubin > 2 x ULN"] == {"P1", "P2"}
    assert summary["Potential Hy's law (same visit)"] == {"P1"}


def test_risk_difference_newcombe():
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80 -> 0.2000 (0.0524, 0.3339)
    d, low, high = c.risk_difference(56, 70, 48, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    assert c.risk_difference(1, 0, 1, 5) is None


def naive_incidence(events, people, arm_of):
    """An independent count: sets of participants per (soc, term), by brute force."""
    first = {p.participant_id: p.first_dose for p in people}
    population = {p.participant_id for p in people if p.randomized_on and p.first_dose}
    found = defaultdict(lambda: defaultdict(int))
    for e in events:
        if e.participant_id not in population or e.onset_date < first[e.participant_id]:
            continue
        key = e.preferred_term or " ".join(e.term.split()).casefold()
        for name in (e.system_organ_class or "uncoded", key):
            worst = found[name]
            worst[e.participant_id] = max(worst[e.participant_id], e.grade)
    result = {}
    for name, worst in found.items():
        for arm in ("x", "y", None):
            who = [p for p in worst if arm is None or arm_of[p] == arm]
            result[(name, arm)] = (len(who), sum(1 for p in who if worst[p] >= 3))
    return result


@pytest.mark.parametrize("seed", range(5))
def test_engine_agrees_with_a_brute_force_count_on_random_trials(seed):
    rng = random.Random(seed)
    terms = [("Somnolence", NERVOUS), ("Dizziness", NERVOUS), ("Nausea", GI), (None, None)]
    people = [person(f"Q{i}", dosed=rng.random() > 0.1) for i in range(60)]
    arm_of = {p.participant_id: rng.choice("xy") for p in people}
    events = []
    for _ in range(300):
        pt, soc = rng.choice(terms)
        events.append(
            AdverseEventRow(
                participant_id=rng.choice(people).participant_id,
                term=rng.choice(["odd thing", "Odd  Thing"]) if pt is None else pt,
                preferred_term=pt,
                system_organ_class=soc,
                onset_date=DOSE + timedelta(days=rng.randint(-5, 40)),
                grade=rng.randint(1, 5),
            )
        )
    columns = c.build_columns(c.safety_population(people), arm_of, LABELS)
    rows = c.incidence(c.treatment_emergent(events, c.first_doses(people)), columns)
    expected = naive_incidence(events, people, arm_of)
    for row in rows:
        name = row.label
        if row.system_organ_class == c.UNCODED_SOC:
            name = "uncoded" if row.level == "soc" else row.label.casefold()
        for col, arm in zip(columns, ("x", "y", None), strict=True):
            assert (row.n(col), row.n(col, 3)) == expected[(name, arm)], (row.label, col.key)
    assert len(rows) == len({k for k, _ in expected})
