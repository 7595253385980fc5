"""The blinding-index engine (issue 26, item 1) against hand computation and published output.

No database: ``reports.blinding_index`` is pure arithmetic on counts.

Tables are written as R package BI writes them (rows = guess, columns = true arm)::

                      true baclofen   true placebo
    guess baclofen         a               b
    guess placebo          c               d
    don't know             e               f

and built with ``table(a, b, c, d, e, f)`` below.

Sources of the expected values:

* hand computation, worked out in the comments (exact fractions);
* the printed output of BlindingIndex.jl (README and test/runtests.jl of
  JuliaHealth/BlindingIndex.jl, a port of R package BI by Schwartz and Mercaldo) for the
  Houweling et al. 2014 investigators' table (Clinical Trials 11:547-552, table 2), which is
  also one of the R package's documented examples (man/BI.Rd). Printed to 3 decimals:
  James 0.896 (SE 0.011, 0.875 to 0.918); Bang, treatment 0.115 (0.018, 0.080 to 0.150),
  placebo 0.022 (0.019, -0.016 to 0.060);
* the CRISP tables of Bang, Ni and Davis 2004 (table 6, five answers; table 7, three), used in
  R package BI's and the SAS macro's examples: Bang's indices worked out by hand below. The
  paper's printed values were not available to us; James' index of table 7 is checked against
  an independent closed form, not against print.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction as F
from statistics import NormalDist

import pytest

from reports import blinding_guesses, blinding_interval, blinding_james
from reports.blinding_bang import BANG_FORMULA, bang_index
from reports.blinding_guesses import FiveCategory, GuessTable, ThreeCategory, tally
from reports.blinding_index import BlindingIndices, blinding_indices
from reports.blinding_james import JAMES_FORMULA, james_index

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054
Z90 = NormalDist().inv_cdf(0.95)  # 1.6448536269514722 (one-sided 95%)


def table(a: int, b: int, c: int, d: int, e: int, f: int) -> GuessTable:
    """R layout (rows guess baclofen / placebo / don't know; columns true baclofen, placebo)."""
    return GuessTable(ThreeCategory(a, c, e), ThreeCategory(b, d, f))


def james_closed_form(a: int, b: int, c: int, d: int, e: int, f: int) -> F:
    """James' index derived independently (weights 0 correct, 1/2 wrong, 1 don't know).

    With M = a + b + c + d answers that are not don't know and N = M + e + f:
    Pdo = (b + c) / (2M); Pde = [(a + b)(b + d) + (c + d)(a + c)] / (2 M^2), hence
    Kd = Pdo / Pde - 1 = (b + c) M / [(a + b)(b + d) + (c + d)(a + c)] - 1 and
    BI = (1 + Pdk + (1 - Pdk) Kd) / 2 with Pdk = (e + f) / N.
    """
    m = a + b + c + d
    n = m + e + f
    kd = F((b + c) * m, (a + b) * (b + d) + (c + d) * (a + c)) - 1
    pdk = F(e + f, n)
    return (1 + pdk + (1 - pdk) * kd) / 2


# --------------------------------------------------------------------------- hand computed

# HAND: a=2 b=1 c=1 d=1 e=1 f=2, N = 8.
#
# Bang, baclofen arm (n = a + c + e = 4): C = 2, W = 1.  BI = (2 - 1)/4 = 1/4.
#   pC = 1/2, pW = 1/4: Var = [1/2 * 1/2 + 1/4 * 3/4 + 2 * 1/2 * 1/4] / 4
#                           = [4/16 + 3/16 + 4/16] / 4 = 11/64.
# Bang, placebo arm (n = b + d + f = 4): C = d = 1, W = b = 1.  BI = 0.
#   pC = pW = 1/4: Var = [3/16 + 3/16 + 2/16] / 4 = 1/8.
#
# James: Pdk = 3/8, 1 - Pdk = 5/8.  Proportions of N: p11 = 2/8, p12 = 1/8, p21 = 1/8,
#   p22 = 1/8; guess margins p1. = 3/8, p2. = 2/8; non-don't-know per arm q1 = 3/8, q2 = 2/8.
#   Pdo = 1/2 (p12 + p21) / (5/8) = 1/2 * (2/8) * (8/5) = 1/5.
#   S = sum w p_i. q_j = 1/2 (p1. q2 + p2. q1) = 1/2 (6/64 + 6/64) = 3/32.
#   Pde = S / (5/8)^2 = 3/32 * 64/25 = 6/25.   Kd = (1/5 - 6/25) / (6/25) = -1/6.
#   BI = (1 + 3/8 + 5/8 * (-1/6)) / 2 = (66/48 - 5/48) / 2 = 61/96.
# James variance: 1 + Kd = 5/6; E_ij = sum_r (w_rj p_r. + w_ir q_r):
#   E11 = (0 + 1/2 * 2/8) + (0 + 1/2 * 2/8) = 1/4;   bracket (5/8 * 0 - 5/6 * 1/4) = -5/24
#   E12 = (1/2 * 3/8 + 0) + (0 + 1/2 * 2/8) = 5/16; bracket (5/8 * 1/2 - 5/6 * 5/16) = 5/96
#   E21 = (0 + 1/2 * 2/8) + (1/2 * 3/8 + 0) = 5/16; bracket 5/96
#   E22 = (1/2 * 3/8 + 0) + (1/2 * 3/8 + 0) = 3/8;   bracket (0 - 5/6 * 3/8) = -5/16
#   num = (5/8)^2 [2/8 (25/576) + 1/8 (25/9216) + 1/8 (25/9216) + 1/8 (25/256)]
#       = 625/147456 + 625/4718592 + 625/4718592 + 625/131072 = 43750/4718592
#   denom = 4 S^2 = 9/256;  v1 = num / denom = 21875/82944
#   v2 = 3/8 * 5/8 - 5/8 * 5/6 * (3/8 + 5/8 * 5/6 / 4) = 15/64 - 2425/9216 = -265/9216
#   Var = (v1 + v2) / 8 = (21875/82944 - 2385/82944) / 8 = 9745/331776.
HAND = (2, 1, 1, 1, 1, 2)


def test_hand_table_bang_per_arm_exact() -> None:
    result = blinding_indices(table(*HAND))
    assert result.bang_active.estimate == F(1, 4)
    assert result.bang_active.variance == F(11, 64)
    assert result.bang_active.n == 4
    assert result.bang_control.estimate == F(0)
    assert result.bang_control.variance == F(1, 8)
    se = math.sqrt(11 / 64)
    assert result.bang_active.standard_error == pytest.approx(se, rel=1e-15)
    assert result.bang_active.lower == pytest.approx(0.25 - Z95 * se, rel=1e-12)
    assert result.bang_active.upper == pytest.approx(0.25 + Z95 * se, rel=1e-12)
    assert result.bang_control.lower == pytest.approx(-Z95 * math.sqrt(1 / 8), rel=1e-12)


def test_hand_table_james_exact() -> None:
    result = james_index(table(*HAND))
    assert result.estimate == F(61, 96)
    assert result.variance == F(9745, 331776)
    assert result.n == 8
    se = math.sqrt(9745 / 331776)
    assert result.standard_error == pytest.approx(se, rel=1e-15)
    assert (result.lower, result.upper) == pytest.approx(
        (61 / 96 - Z95 * se, 61 / 96 + Z95 * se), rel=1e-12
    )


def test_single_respondent_tables() -> None:
    # One person in the baclofen arm guessed baclofen: Bang = (1 - 0)/1 = 1, Var = 0;
    # one placebo person guessed baclofen: Bang = (0 - 1)/1 = -1, Var = [0 + 1*0 + 0]/1 = 0.
    result = blinding_indices(table(1, 1, 0, 0, 0, 0))
    assert result.bang_active.estimate == 1 and result.bang_active.variance == 0
    assert result.bang_control.estimate == -1 and result.bang_control.variance == 0
    assert result.bang_active.lower is None and "variance is 0" in (
        result.bang_active.interval_reason or ""
    )
    # James: M = 2, b + c = 1: Kd = 1 * 2 / [(2)(1) + 0] - 1 = 0, Pdk = 0 -> BI = 1/2.
    assert result.james.estimate == F(1, 2)


# --------------------------------------------------------------------------- published output

HOUWELING_INVESTIGATORS = (48, 22, 4, 30, 330, 319)
PRINTED = {  # BlindingIndex.jl README / test/runtests.jl (port of R package BI)
    "james": (0.896, 0.011, 0.875, 0.918),
    "bang_active": (0.115, 0.018, 0.080, 0.150),
    "bang_control": (0.022, 0.019, -0.016, 0.060),
}


def check_against_print(result: BlindingIndices) -> None:
    for name, printed in PRINTED.items():
        got = getattr(result, name)
        assert got.estimate is not None
        values = (float(got.estimate), got.standard_error, got.lower, got.upper)
        assert tuple(round(v, 3) for v in values) == printed, name


def test_houweling_investigators_reproduce_printed_output() -> None:
    result = blinding_indices(table(*HOUWELING_INVESTIGATORS))
    check_against_print(result)
    # Exact: Bang = (48 - 4)/382 = 22/191 and (30 - 22)/371 = 8/371.
    assert result.bang_active.estimate == F(22, 191)
    assert result.bang_control.estimate == F(8, 371)
    assert result.james.estimate == james_closed_form(*HOUWELING_INVESTIGATORS) == F(225, 251)


def test_james_wrong_guess_weight_cancels_with_two_arms(monkeypatch: pytest.MonkeyPatch) -> None:
    # With two arms the kappa Kd = Pdo/Pde - 1 is a ratio in which the single wrong-guess
    # weight cancels (and so it does in the variance): the published SAS macro's 0.75 gives
    # exactly what the R package's 0.5 gives. Only the don't-know weight (1) matters.
    expected = blinding_indices(table(*HOUWELING_INVESTIGATORS)).james
    monkeypatch.setattr(blinding_james, "JAMES_WEIGHTS", ((F(0), F(3, 4)), (F(3, 4), F(0))))
    assert blinding_indices(table(*HOUWELING_INVESTIGATORS)).james == expected


def james_variant(a: int, b: int, c: int, d: int, e: int, f: int, *, slip: str) -> float:
    """James' estimate with one deliberate slip, for the negative controls."""
    m, n = a + b + c + d, a + b + c + d + e + f
    pdk = F(e + f, n)
    if slip == "full columns":  # Pde from the arms' totals, don't know included
        kd = F((b + c) * m, (a + b) * (b + d + f) + (c + d) * (a + c + e)) - 1
        return float((1 + pdk + (1 - pdk) * kd) / 2)
    kd = F((b + c) * m, (a + b) * (b + d) + (c + d) * (a + c)) - 1
    assert slip == "no Pdk"  # the kappa alone, don't know ignored
    return float((1 + kd) / 2)


def test_negative_control_wrong_james_variants_fail_print() -> None:
    printed = PRINTED["james"][0]
    assert round(float(james_closed_form(*HOUWELING_INVESTIGATORS)), 3) == printed
    for slip in ("full columns", "no Pdk"):
        assert round(james_variant(*HOUWELING_INVESTIGATORS, slip=slip), 3) != printed, slip


def test_negative_control_wrong_bang_variants_fail_print() -> None:
    a, b, c, d, e, f = HOUWELING_INVESTIGATORS
    # Wrong 1: Bang's index without the weight of don't know, 2 C/(C + W) - 1.
    assert round(2 * a / (a + c) - 1, 3) != PRINTED["bang_active"][0]
    # Wrong 2: the covariance added with a plus sign (-2 pC pW instead of +2 pC pW), as the
    # SAS macro's 5-category variance does: the placebo arm's SE comes out 0.018, not 0.019.
    n = b + d + f
    p_c, p_w = d / n, b / n
    wrong_se = math.sqrt((p_c * (1 - p_c) + p_w * (1 - p_w) - 2 * p_c * p_w) / n)
    assert round(wrong_se, 3) != PRINTED["bang_control"][1]
    # The engine, same table: the printed 0.019.
    right = bang_index(ThreeCategory(b, d, f), "control")
    assert round(right.standard_error or 0, 3) == PRINTED["bang_control"][1]


def test_negative_control_dropping_dont_know_from_n_fails_hand_value() -> None:
    # Bang's n counts don't know: (C - W)/(C + W) for the hand table's baclofen arm is 1/3,
    # not the 1/4 the engine (and the hand computation) give.
    assert F(2 - 1, 2 + 1) != bang_index(ThreeCategory(2, 1, 1), "active").estimate


# CRISP (Bang et al. 2004, table 7; R package BI's first example, x = 82 27 / 25 29 / 170 83).
# Baclofen ("treatment") arm n = 82 + 25 + 170 = 277: BI = (82 - 25)/277 = 57/277 = 0.2058;
#   pC = 82/277, pW = 25/277: Var = [(82 + 25)/277 - (57/277)^2]/277 (identity below).
# Placebo arm n = 27 + 29 + 83 = 139: BI = (29 - 27)/139 = 2/139 = 0.0144.
# James (closed form): M = 163, b + c = 52, (a + b)(b + d) + (c + d)(a + c) = 109*56 + 54*107
#   = 11882, Kd = 52*163/11882 - 1 = -1703/5941, Pdk = 253/416,
#   BI = (669/416 - 163/416 * 1703/5941)/2 = 71095/95056 = 0.7479.
CRISP = (82, 27, 25, 29, 170, 83)


def test_crisp_three_categories() -> None:
    result = blinding_indices(table(*CRISP))
    assert result.bang_active.estimate == F(57, 277)
    assert result.bang_active.variance == (F(82 + 25, 277) - F(57, 277) ** 2) / 277
    assert result.bang_control.estimate == F(2, 139)
    assert result.bang_control.variance == (F(27 + 29, 139) - F(2, 139) ** 2) / 139
    assert result.james.estimate == F(71095, 95056) == james_closed_form(*CRISP)
    assert round(float(result.bang_active.estimate), 2) == 0.21
    assert round(float(result.bang_control.estimate), 2) == 0.01


# CRISP, five answers (Bang et al. 2004, table 6): strongly / somewhat believe treatment,
# somewhat / strongly believe placebo, don't know.
#   treatment arm: 38, 44, 21, 4, 170 (n = 277); placebo arm: 11, 16, 21, 8, 83 (n = 139).
# Treatment arm, weights 1, 1/2, -1/2, -1, 0: BI = (38 + 22 - 21/2 - 4)/277 = (91/2)/277
#   = 91/554 = 0.1643; sum w^2 p = (38 + 44/4 + 21/4 + 4)/277 = (233/4)/277 = 233/1108,
#   Var = (233/1108 - (91/554)^2)/277.
# Placebo arm, weights -1, -1/2, 1/2, 1, 0: BI = (-11 - 8 + 21/2 + 8)/139 = (-1/2)/139
#   = -1/278 = -0.0036; sum w^2 p = (11 + 16/4 + 21/4 + 8)/139 = (113/4)/139 = 113/556.
CRISP_5 = GuessTable(FiveCategory(38, 44, 21, 4, 170), FiveCategory(11, 16, 21, 8, 83))


def test_crisp_five_categories() -> None:
    result = blinding_indices(CRISP_5)
    assert result.bang_active.estimate == F(91, 554)
    assert result.bang_active.variance == (F(233, 1108) - F(91, 554) ** 2) / 277
    assert result.bang_control.estimate == F(-1, 278)
    assert result.bang_control.variance == (F(113, 556) - F(1, 278) ** 2) / 139
    # James on five answers = James on their 3-category collapse = table 7.
    assert CRISP_5.collapsed() == table(*CRISP)
    assert result.james == james_index(table(*CRISP))


def test_five_categories_without_somewhat_equal_three_categories() -> None:
    # The 5-category variance (multinomial) must reduce to the R package's 3-category one;
    # the SAS macro's sign of the covariance would not (the placebo SE above).
    for a, b, c, d, e, f in [CRISP, HOUWELING_INVESTIGATORS, HAND, (5, 0, 0, 7, 1, 0)]:
        five = GuessTable(FiveCategory(a, 0, 0, c, e), FiveCategory(b, 0, 0, d, f))
        r5, r3 = blinding_indices(five), blinding_indices(table(a, b, c, d, e, f))
        assert r5.bang_active == r3.bang_active
        assert r5.bang_control == r3.bang_control
        assert r5.james == r3.james


# --------------------------------------------------------------------------- properties

SMALL = list(itertools.product(range(3), repeat=6))  # every table with cells 0..2: 729


def test_every_small_table_is_handled_without_error() -> None:
    for cells in SMALL:
        result = blinding_indices(table(*cells))
        for arm_result in (result.bang_active, result.bang_control):
            if arm_result.estimate is None:
                assert arm_result.reason
                continue
            assert -1 <= arm_result.estimate <= 1
            assert arm_result.variance is not None and arm_result.variance >= 0
        james = result.james
        if james.estimate is None:
            assert james.reason
        else:
            assert 0 <= james.estimate <= 1
            assert james.variance is not None and james.variance >= 0
            if james.variance > 0:
                assert james.lower is not None and james.upper is not None
                assert james.lower < float(james.estimate) < james.upper


def test_bang_identity_and_james_closed_form_on_small_tables() -> None:
    for a, b, c, d, e, f in SMALL:
        result = blinding_indices(table(a, b, c, d, e, f))
        for (right, wrong, n), got in [
            ((a, c, a + c + e), result.bang_active),
            ((d, b, b + d + f), result.bang_control),
        ]:
            if right + wrong == 0:
                assert got.estimate is None
                continue
            # BI = (C - W)/n and Var = [(C + W)/n - BI^2]/n
            assert got.estimate == F(right - wrong, n)
            assert got.variance == (F(right + wrong, n) - got.estimate**2) / n
        if result.james.estimate is not None and a + b + c + d > 0:
            assert result.james.estimate == james_closed_form(a, b, c, d, e, f)


def test_swapping_arms_and_guesses_mirrors_bang() -> None:
    tables = [table(*cells) for cells in SMALL[::7]] + [CRISP_5, table(*CRISP)]
    for original in tables:
        swapped = original.swapped()
        before, after = blinding_indices(original), blinding_indices(swapped)
        # Relabelling baclofen <-> placebo (arms and guesses alike) exchanges the arms'
        # indices and leaves James' overall index as it was.
        assert after.bang_active == before.bang_control
        assert after.bang_control == before.bang_active
        assert after.james == before.james
        assert swapped.swapped() == original


def test_flipping_every_guess_negates_bang() -> None:
    for original in [table(*cells) for cells in SMALL[::5]] + [CRISP_5]:
        flipped = GuessTable(
            blinding_guesses._mirror(original.active), blinding_guesses._mirror(original.control)
        )
        for arm in ("active", "control"):
            before = bang_index(getattr(original, arm), arm)
            after = bang_index(getattr(flipped, arm), arm)
            if before.estimate is None:
                assert after.estimate is None
                continue
            assert after.estimate == -before.estimate
            assert after.variance == before.variance


def test_james_reference_points() -> None:
    # Every guess right: BI = 0 (blind broken), with no variance.
    all_right = james_index(table(5, 0, 0, 4, 0, 0))
    assert all_right.estimate == 0 and all_right.variance == 0 and all_right.lower is None
    # Guesses independent of arm (random guessing), no don't know: Kd = 0, BI = 1/2.
    assert james_index(table(3, 3, 3, 3, 0, 0)).estimate == F(1, 2)
    # Every guess wrong: Pdo = 1/2, Pde = 1/4 (a = d = 0): Kd = 1, BI = 1.
    assert james_index(table(0, 4, 4, 0, 0, 0)).estimate == 1


# --------------------------------------------------------------------------- degenerate


def test_arm_without_answers() -> None:
    result = blinding_indices(table(3, 0, 1, 0, 2, 0))
    assert result.bang_control.estimate is None
    assert result.bang_control.n == 0
    assert result.bang_control.reason == "no answers in this arm"
    assert result.bang_control.lower is None and result.bang_control.standard_error is None
    assert result.bang_active.estimate == F(2, 6)


def test_arm_answering_only_dont_know() -> None:
    result = bang_index(ThreeCategory(0, 0, 5), "control")
    assert result.estimate is None and result.n == 5
    assert "don't know" in (result.reason or "")
    five = bang_index(FiveCategory(0, 0, 0, 0, 3), "active")
    assert five.estimate is None


def test_everyone_dont_know() -> None:
    # R package BI's documented edge case (James 1996 p. 1425): BI = 1, SE = 0.
    result = blinding_indices(table(0, 0, 0, 0, 4, 3))
    assert result.james.estimate == 1 and result.james.variance == 0
    assert result.james.standard_error == 0.0
    assert result.james.lower is None and "don't know" in (result.james.interval_reason or "")
    assert result.bang_active.estimate is None and result.bang_control.estimate is None
    # Only one arm answered, all don't know: not the documented case; undefined.
    one_arm = james_index(table(0, 0, 0, 0, 4, 0))
    assert one_arm.estimate is None and one_arm.reason


def test_no_answers_at_all() -> None:
    result = blinding_indices(table(0, 0, 0, 0, 0, 0))
    for got in (result.james, result.bang_active, result.bang_control):
        assert got.estimate is None and got.n == 0 and got.reason


def test_expected_disagreement_zero_is_undefined() -> None:
    # Only the baclofen arm guessed, and only "baclofen": Pde = 1/2 [(3)(0) + (0)(3)] = 0.
    result = james_index(table(3, 0, 0, 0, 1, 2))
    assert result.estimate is None and "Pde is 0" in (result.reason or "")


def test_negative_variance_gives_no_interval() -> None:
    got = blinding_interval._with_interval(
        F(1, 2), F(-1, 100), 10, 0.95, "two-sided", Z95, (0.0, 1.0)
    )
    assert got.estimate == F(1, 2) and got.lower is None and got.standard_error is None
    assert "negative" in (got.interval_reason or "")


# --------------------------------------------------------------------------- options, input


def test_one_sided_intervals_as_r_package() -> None:
    t = table(*HOUWELING_INVESTIGATORS)
    two = blinding_indices(t)
    greater = blinding_indices(t, bang_alternative="greater", james_alternative="greater")
    less = blinding_indices(t, bang_alternative="less", james_alternative="less")
    se = two.bang_active.standard_error or 0
    est = float(two.bang_active.estimate or 0)
    assert greater.bang_active.lower == pytest.approx(est - Z90 * se, rel=1e-12)
    assert greater.bang_active.upper == 1.0
    assert less.bang_active.lower == -1.0
    assert less.bang_active.upper == pytest.approx(est + Z90 * se, rel=1e-12)
    assert greater.james.upper == 1.0 and less.james.lower == 0.0
    assert greater.james.alternative == "greater"
    ninety = blinding_indices(t, conf_level=0.90)
    assert ninety.james.lower == pytest.approx(greater.james.lower, rel=1e-12)


def test_bad_options_and_counts_raise() -> None:
    with pytest.raises(ValueError):
        bang_index(ThreeCategory(1, 1, 1), "active", conf_level=1.0)
    with pytest.raises(ValueError):
        james_index(table(*HAND), alternative="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bang_index(ThreeCategory(1, 1, 1), "baclofen")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ThreeCategory(-1, 0, 0)
    with pytest.raises(ValueError):
        ThreeCategory(True, 0, 0)
    with pytest.raises(TypeError):
        GuessTable(ThreeCategory(1, 0, 0), FiveCategory(1, 0, 0, 0, 0))


def test_tally_counts_answers() -> None:
    answers = [
        ("baclofen", "baclofen", "strongly"),
        ("baclofen", "baclofen", "somewhat"),
        ("baclofen", "placebo", "somewhat"),
        ("baclofen", "dont_know", None),
        ("placebo", "placebo", "strongly"),
        ("placebo", "baclofen", "strongly"),
        ("placebo", "dont_know", None),
    ]
    assert tally(answers) == GuessTable(ThreeCategory(2, 1, 1), ThreeCategory(1, 1, 1))
    assert tally(answers, five_category=True) == GuessTable(
        FiveCategory(1, 1, 1, 0, 1), FiveCategory(1, 0, 0, 1, 1)
    )
    with pytest.raises(ValueError):
        tally([("baclofen", "baclofen", None)], five_category=True)
    with pytest.raises(ValueError):
        tally([("active", "baclofen", None)])
    with pytest.raises(ValueError):
        tally([("baclofen", "maybe", None)])
    coded = tally([("A", "B", None)], active="A", control="B")
    assert coded == GuessTable(ThreeCategory(0, 1, 0), ThreeCategory(0, 0, 0))


def test_formula_texts_name_their_sources() -> None:
    assert "Bang, Ni and Davis 2004" in BANG_FORMULA and "25:143-156" in BANG_FORMULA
    assert "(C - W)/n" in BANG_FORMULA
    assert "James, Bloch, Lee, Kraemer and Fuller 1996" in JAMES_FORMULA
    assert "15:1421-1434" in JAMES_FORMULA and "Pdk" in JAMES_FORMULA
    for text in (BANG_FORMULA, JAMES_FORMULA):
        assert text.isascii()  # printable by the report's base fonts
    assert "C - W" in (bang_index.__doc__ or "") and "Kd" in (james_index.__doc__ or "")


# --- the engine's contract beyond the numbers (what a caller reads besides the estimate) ---


def test_tally_maps_each_of_the_five_answers_to_its_own_cell():
    """Each (guess, confidence) lands in its own column for both arms: a "somewhat" guess of
    the active drug is not counted as one of the control (the report's table reads these)."""
    answers = [
        ("baclofen", "baclofen", "strongly"),
        ("baclofen", "baclofen", "somewhat"),
        ("baclofen", "baclofen", "somewhat"),
        ("baclofen", "placebo", "somewhat"),
        ("baclofen", "placebo", "somewhat"),
        ("baclofen", "placebo", "somewhat"),
        ("baclofen", "placebo", "strongly"),
        ("baclofen", "placebo", "strongly"),
        ("baclofen", "placebo", "strongly"),
        ("baclofen", "placebo", "strongly"),
        ("baclofen", "dont_know", None),
        ("placebo", "baclofen", "somewhat"),
        ("placebo", "dont_know", None),
    ]
    table = tally(answers, five_category=True)
    assert table.active == FiveCategory(1, 2, 3, 4, 1)
    assert table.control == FiveCategory(0, 1, 0, 0, 1)
    three = tally(answers)
    assert table.collapsed() == three
    assert three.active == ThreeCategory(3, 7, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ThreeCategory(-1, 0, 0), "non-negative integer"),
        (lambda: ThreeCategory(0, -1, 0), "non-negative integer"),
        (lambda: ThreeCategory(0, 0, -1), "non-negative integer"),
        (lambda: FiveCategory(-1, 0, 0, 0, 0), "non-negative integer"),
        (lambda: FiveCategory(0, -1, 0, 0, 0), "non-negative integer"),
        (lambda: FiveCategory(0, 0, -1, 0, 0), "non-negative integer"),
        (lambda: FiveCategory(0, 0, 0, -1, 0), "non-negative integer"),
        (lambda: FiveCategory(0, 0, 0, 0, -1), "non-negative integer"),
        (lambda: ThreeCategory(1.0, 0, 0), "non-negative integer"),
        (lambda: bang_index(ThreeCategory(1, 0, 0), "both"), "arm must be"),
        (lambda: bang_index(ThreeCategory(1, 0, 0), "active", alternative="up"), "one of"),
        (lambda: bang_index(ThreeCategory(1, 0, 0), "active", conf_level=0), "strictly"),
        (lambda: bang_index(ThreeCategory(1, 0, 0), "active", conf_level=1), "strictly"),
        (lambda: bang_index(ThreeCategory(1, 0, 0), "active", conf_level=1.5), "strictly"),
        (lambda: tally([("baclofen", "aspirin", None)]), "unknown guess"),
        (lambda: tally([("aspirin", "dont_know", None)]), "unknown arm"),
        (
            lambda: tally([("baclofen", "placebo", None)], five_category=True),
            "needs its confidence",
        ),
    ],
)
def test_refusals_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_table_mixing_the_forms_is_refused():
    with pytest.raises(TypeError, match="same form"):
        GuessTable(ThreeCategory(1, 0, 0), FiveCategory(1, 0, 0, 0, 0))


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("conf_level", [0.9, 0.99])
def test_every_result_carries_its_level_side_and_size(conf_level, alternative):
    """Defined, undefined and interval-less results alike say at which level, on which side
    and on how many answers they were computed (the report prints the level)."""
    tables = [
        GuessTable(ThreeCategory(5, 2, 3), ThreeCategory(2, 4, 1)),  # defined
        GuessTable(ThreeCategory(0, 0, 0), ThreeCategory(0, 0, 0)),  # no answers
        GuessTable(ThreeCategory(0, 0, 2), ThreeCategory(0, 0, 3)),  # all don't know
        GuessTable(ThreeCategory(0, 0, 2), ThreeCategory(0, 0, 0)),  # one arm, d.k.
        GuessTable(ThreeCategory(4, 0, 0), ThreeCategory(0, 0, 0)),  # Pde = 0
        GuessTable(ThreeCategory(4, 0, 1), ThreeCategory(0, 3, 0)),  # variance 0
        GuessTable(FiveCategory(2, 1, 1, 0, 1), FiveCategory(0, 1, 2, 2, 0)),
    ]
    for table in tables:
        found = blinding_indices(
            table,
            conf_level=conf_level,
            bang_alternative=alternative,
            james_alternative=alternative,
        )
        sizes = (table.active.total, table.control.total, table.active.total + table.control.total)
        for result, n in zip(
            (found.bang_active, found.bang_control, found.james), sizes, strict=True
        ):
            assert (result.conf_level, result.alternative, result.n) == (
                conf_level,
                alternative,
                n,
            ), (table, result)


def test_each_undefined_index_and_missing_interval_says_why():
    none = bang_index(ThreeCategory(0, 0, 0), "active")
    assert none.reason == none.interval_reason == "no answers in this arm"
    unknown = bang_index(ThreeCategory(0, 0, 4), "control")
    assert unknown.reason.startswith("every answer in this arm is don't know: Bang's index")
    assert unknown.reason.endswith("the R package BI returns NaN)")
    assert james_index(GuessTable(ThreeCategory(0, 0, 0), ThreeCategory(0, 0, 0))).reason == (
        "no answers"
    )
    # One answer, a correct guess: Pde is 0 (not "no answers").
    single = james_index(GuessTable(ThreeCategory(1, 0, 0), ThreeCategory(0, 0, 0)))
    assert single.estimate is None and single.n == 1
    assert single.reason.startswith("expected disagreement Pde is 0 (every guess names one arm")
    assert single.reason.endswith("James' kappa, hence its index, is undefined")
    lonely = james_index(GuessTable(ThreeCategory(0, 0, 2), ThreeCategory(0, 0, 0)))
    assert lonely.reason == (
        "only one arm answered and every answer is don't know: James' index is undefined"
    )
    # One don't know in each arm, nothing else: James' edge case, 1 with no variance.
    edge = james_index(GuessTable(ThreeCategory(0, 0, 1), ThreeCategory(0, 0, 1)))
    assert (edge.estimate, edge.variance, edge.standard_error, edge.n) == (1, 0, 0.0, 2)
    assert edge.interval_reason == (
        "every answer is don't know: James' index is 1 by definition, with no variance "
        "(James et al. 1996, p. 1425)"
    )
    flat = bang_index(ThreeCategory(4, 0, 0), "active")
    assert (flat.estimate, flat.variance, flat.standard_error) == (1, 0, 0.0)
    assert flat.interval_reason == (
        "the variance is 0 (e.g. every guess right, or every guess wrong): "
        "no normal-approximation interval"
    )
    assert flat.reason is None
