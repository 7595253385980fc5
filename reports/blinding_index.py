"""The counting engine of the blinding assessment: Bang's and James' blinding indices.

Pure Python, no database: it takes the counts of guesses by true arm and returns each index
with its variance, standard error and confidence interval. The indices and their variances are
exact (``fractions.Fraction``); only the standard error and the interval limits, which need a
square root and a normal quantile, are floats.

Sources, followed exactly:

* Bang H, Ni L, Davis CE. Assessment of blinding in clinical trials. Controlled Clinical Trials
  2004;25:143-156 (Bang's index, one per arm).
* James KE, Bloch DA, Lee KK, Kraemer HC, Fuller RK. An index for assessing blindness in a
  multi-centre clinical trial: disulfiram for alcohol cessation - a VA cooperative study.
  Statistics in Medicine 1996;15:1421-1434 (James' index, one for the trial).
* The R package ``BI`` (Schwartz and Mercaldo, written with Dr Bang's help; CRAN "BI",
  github.com/marcschwartz/BI, file ``R/BI.r``, function ``BI``): the arithmetic below is that
  function's, term by term (James: ``Pdk``, ``Pdo``, ``Pde``, ``Kd``, ``term1.num``,
  ``term1.denom``, ``v.2``; Bang: ``BI.est`` and ``BI.se``), with its default James weights
  (0 for a correct guess, 0.5 for a wrong one, 1 for don't know) and its Wald intervals
  (estimate -/+ z * SE, not clipped to the index's range; two-sided by default, one-sided on
  request with the other limit at the end of the range, as ``alternative.B``/``alternative.J``).
  With two arms the wrong-guess weight cancels out of James' kappa and its variance (any
  positive value gives the same index; tested with the SAS macro's 0.75), so only the
  don't-know weight of 1 matters. Its documented edge case is kept: when every answer in both
  arms is "don't know", James' index is 1 with a standard error of 0 (James et al. 1996,
  p. 1425; Bang et al. 2004, p. 146).

Forms supported:

* **3 categories** (guess the active drug / guess the control / don't know): both indices,
  exactly as the R package.
* **5 categories** (strongly / somewhat believe the active drug, somewhat / strongly believe
  the control, don't know; Bang 2004's questionnaire): Bang's index with the weights of Bang
  2004 (1, 0.5, -0.5, -1, 0, signed so that +1 is "strongly believe the true arm") and the
  multinomial variance of a weighted sum of proportions, (sum w^2 p - BI^2) / n, which reduces
  to the R package's 3-category variance when no one answers "somewhat" (tested). James' index
  on a 5-category table is computed on its 3-category collapse (strongly + somewhat), as Bang
  2004 and the published SAS macro do. Note: that SAS macro ("Blinding Indexes - Generalized
  and Unified Framework") adds the covariance terms with a plus sign in its 5-category
  variance, which contradicts its own 3-category variance; we use the multinomial covariance
  (-p_j p_k / n), the one consistent with the R package.
* Not supported: Bang 2004's ancillary table (the second guess of those who said "don't
  know"), more than two arms, and James' alternative weights.

Degenerate tables never raise: an index that cannot be computed is ``None`` with the reason in
``reason``; an interval that cannot be computed (a variance of 0, or a negative variance
estimate) is ``None`` with the reason in ``interval_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

Alternative = Literal["two-sided", "less", "greater"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")

HALF = Fraction(1, 2)

# Guess categories, as the capture form is expected to store them (the engine itself only
# sees counts; ``tally`` maps stored answers onto them).
DONT_KNOW = "dont_know"
STRONGLY = "strongly"
SOMEWHAT = "somewhat"

BANG_FORMULA = (
    "Bang's blinding index, per arm (Bang, Ni and Davis 2004, Controlled Clinical Trials "
    "25:143-156): BI = (2 x C/(C + W) - 1) x (C + W)/n = (C - W)/n, where C is the number of "
    "correct guesses of the arm, W the number of wrong ones and n everyone in the arm who "
    "answered, don't know included. Variance = [pC(1 - pC) + pW(1 - pW) + 2 pC pW]/n with "
    "pC = C/n and pW = W/n; 95% CI = BI -/+ 1.96 x sqrt(variance). With five answers "
    "(strongly or somewhat believe either arm, don't know) each answer has a weight w: 1 for "
    "strongly believing the true arm, 0.5 somewhat, -0.5 somewhat believing the other arm, "
    "-1 strongly, 0 don't know; BI = sum(w x count)/n and variance = [sum(w^2 x p) - BI^2]/n. "
    "BI runs from -1 (everyone guessed the other arm) through 0 (guesses no better than "
    "chance) to 1 (everyone guessed their arm: the blind is broken); -0.2 to 0.2 is commonly "
    "read as a blind that holds. Computed as in the R package BI (Schwartz and Mercaldo)."
)

JAMES_FORMULA = (
    "James' blinding index, overall (James, Bloch, Lee, Kraemer and Fuller 1996, Statistics "
    "in Medicine 15:1421-1434): BI = [1 + Pdk + (1 - Pdk) x Kd]/2, where Pdk is the proportion "
    "of don't-know answers and Kd = (Pdo - Pde)/Pde a weighted kappa over the other answers, "
    "with weight w = 0 for a correct guess and 0.5 for a wrong one: Pdo = sum(w x p[guess, "
    "arm])/(1 - Pdk), Pde = sum(w x p[guess] x q[arm])/(1 - Pdk)^2, where p are proportions of "
    "all N answers and q[arm] the proportion of all answers that come from the arm and are not "
    "don't know. Variance = {sum over guess i and arm j of p[i,j] (1 - Pdk)^2 [(1 - Pdk) w[i,j] "
    "- (1 + Kd) sum over r of (w[r,j] p[r] + w[i,r] q[r])]^2 / [4 (sum w x p[guess] x "
    "q[arm])^2] + Pdk (1 - Pdk) - (1 - Pdk)(1 + Kd)[Pdk + (1 - Pdk)(1 + Kd)/4]}/N; 95% CI = "
    "BI -/+ 1.96 x sqrt(variance). BI runs from 0 (every guess correct: the blind is broken) "
    "through 0.5 (guesses no better than chance) to 1 (everyone answered don't know); an upper "
    "confidence limit below 0.5 is read as evidence of unblinding. When every answer is don't "
    "know, BI = 1 with a standard error of 0. Computed as in the R package BI."
)


@dataclass(frozen=True)
class ThreeCategory:
    """The guesses of the people of one true arm: the active drug, the control, don't know."""

    active: int
    control: int
    dont_know: int

    def __post_init__(self) -> None:
        _check_counts(self.active, self.control, self.dont_know)

    @property
    def total(self) -> int:
        return self.active + self.control + self.dont_know


@dataclass(frozen=True)
class FiveCategory:
    """The guesses of one true arm on Bang 2004's five-answer questionnaire."""

    strongly_active: int
    somewhat_active: int
    somewhat_control: int
    strongly_control: int
    dont_know: int

    def __post_init__(self) -> None:
        _check_counts(
            self.strongly_active,
            self.somewhat_active,
            self.somewhat_control,
            self.strongly_control,
            self.dont_know,
        )

    @property
    def total(self) -> int:
        return (
            self.strongly_active
            + self.somewhat_active
            + self.somewhat_control
            + self.strongly_control
            + self.dont_know
        )

    def collapsed(self) -> ThreeCategory:
        """Strongly + somewhat, per arm guessed (the 3-category table of the same answers)."""
        return ThreeCategory(
            active=self.strongly_active + self.somewhat_active,
            control=self.somewhat_control + self.strongly_control,
            dont_know=self.dont_know,
        )


ArmGuesses = ThreeCategory | FiveCategory


@dataclass(frozen=True)
class GuessTable:
    """Guesses by true arm: ``active`` (baclofen) and ``control`` (placebo), same form both."""

    active: ArmGuesses
    control: ArmGuesses

    def __post_init__(self) -> None:
        if type(self.active) is not type(self.control):
            raise TypeError("both arms must use the same form (3 or 5 categories)")

    @property
    def five_category(self) -> bool:
        return isinstance(self.active, FiveCategory)

    def collapsed(self) -> GuessTable:
        if isinstance(self.active, FiveCategory) and isinstance(self.control, FiveCategory):
            return GuessTable(self.active.collapsed(), self.control.collapsed())
        return self

    def swapped(self) -> GuessTable:
        """The same answers with the arms' labels exchanged (active <-> control, arms and
        guesses alike)."""
        return GuessTable(_mirror(self.control), _mirror(self.active))


@dataclass(frozen=True)
class IndexResult:
    """One blinding index: exact estimate and variance, float SE and interval.

    ``estimate`` is None when the index is undefined for the table (``reason`` says why);
    ``lower``/``upper`` are None when no interval can be formed (``interval_reason``).
    """

    estimate: Fraction | None
    variance: Fraction | None
    standard_error: float | None
    lower: float | None
    upper: float | None
    n: int
    conf_level: float
    alternative: str
    reason: str | None = None
    interval_reason: str | None = None


@dataclass(frozen=True)
class BlindingIndices:
    """Bang's index in each arm and James' index for the table."""

    bang_active: IndexResult
    bang_control: IndexResult
    james: IndexResult


# --------------------------------------------------------------------------- Bang


def bang_index(
    guesses: ArmGuesses,
    arm: Literal["active", "control"],
    *,
    conf_level: float = 0.95,
    alternative: Alternative = "two-sided",
) -> IndexResult:
    """Bang's blinding index of one arm (Bang, Ni and Davis 2004).

    3 categories, C = correct guesses, W = wrong guesses, D = don't know, n = C + W + D::

        BI = (2 * C / (C + W) - 1) * (C + W) / n  =  (C - W) / n
        Var(BI) = [pC (1 - pC) + pW (1 - pW) + 2 pC pW] / n,   pC = C / n, pW = W / n
        CI = BI -/+ z * sqrt(Var)     (z = 1.96 for a two-sided 95% interval)

    as ``BI.est``/``BI.se`` in R package BI, ``R/BI.r``. 5 categories: weights w = 1, 0.5,
    -0.5, -1, 0 for strongly / somewhat believing the true arm, somewhat / strongly believing
    the other, don't know; BI = sum(w * count) / n, Var = [sum(w^2 * p) - BI^2] / n (the
    multinomial variance; it equals the 3-category one when no one says "somewhat").

    Undefined (``estimate`` None, with ``reason``): no answer in the arm, or only "don't
    know" answers (the R package's NaN). A variance of 0 (every guess right, or every guess
    wrong) gives no interval (``interval_reason``).
    """
    if arm not in ("active", "control"):
        raise ValueError(f"arm must be 'active' or 'control', not {arm!r}")
    z = _z(conf_level, alternative)
    n = guesses.total
    if n == 0:
        return _undefined(n, conf_level, alternative, "no answers in this arm")
    weighted = _bang_weights(guesses, arm)
    if all(count == 0 for weight, count in weighted if weight != 0):
        return _undefined(
            n,
            conf_level,
            alternative,
            "every answer in this arm is don't know: Bang's index is undefined (no guess to "
            "score; the R package BI returns NaN)",
        )
    estimate = sum((weight * count for weight, count in weighted), Fraction(0)) / n
    if isinstance(guesses, ThreeCategory):
        # R package BI, R/BI.r: BI.se[i] <- sqrt((p1 (1 - p1) + p2 (1 - p2) + 2 p1 p2) / n)
        p1 = Fraction(guesses.active, n)
        p2 = Fraction(guesses.control, n)
        variance = (p1 * (1 - p1) + p2 * (1 - p2) + 2 * p1 * p2) / n
    else:
        second_moment = sum((weight**2 * count for weight, count in weighted), Fraction(0)) / n
        variance = (second_moment - estimate**2) / n
    return _with_interval(estimate, variance, n, conf_level, alternative, z, (-1.0, 1.0))


def _bang_weights(guesses: ArmGuesses, arm: str) -> list[tuple[Fraction, int]]:
    """(weight, count) pairs, weight +1 for a (strongly) correct guess of ``arm``."""
    sign = 1 if arm == "active" else -1
    if isinstance(guesses, ThreeCategory):
        return [
            (Fraction(sign), guesses.active),
            (Fraction(-sign), guesses.control),
            (Fraction(0), guesses.dont_know),
        ]
    return [
        (Fraction(sign), guesses.strongly_active),
        (sign * HALF, guesses.somewhat_active),
        (-sign * HALF, guesses.somewhat_control),
        (Fraction(-sign), guesses.strongly_control),
        (Fraction(0), guesses.dont_know),
    ]


# --------------------------------------------------------------------------- James

# James' default weights (R package BI): rows = guess (active, control), columns = true arm
# (active, control); 0 for a correct guess, 0.5 for a wrong one (don't know weighs 1 and
# enters only through Pdk).
JAMES_WEIGHTS = ((Fraction(0), HALF), (HALF, Fraction(0)))


def james_index(
    table: GuessTable,
    *,
    conf_level: float = 0.95,
    alternative: Alternative = "two-sided",
) -> IndexResult:
    """James' blinding index of the whole table (James et al. 1996).

    With N answers, p[i,j] the proportion of all answers that guess i (active, control) and
    come from arm j, p[i] = p[i,active] + p[i,control], Pdk the proportion of don't know,
    q[j] the proportion of answers from arm j that are not don't know, weights w = 0 for a
    correct guess and 0.5 for a wrong one::

        Pdo = sum_ij w[i,j] p[i,j] / (1 - Pdk)
        Pde = sum_ij w[i,j] p[i] q[j] / (1 - Pdk)^2
        Kd  = (Pdo - Pde) / Pde
        BI  = (1 + Pdk + (1 - Pdk) Kd) / 2
        Var = { sum_ij p[i,j] (1 - Pdk)^2 [(1 - Pdk) w[i,j] - (1 + Kd) E[i,j]]^2
                / (4 (sum_ij w[i,j] p[i] q[j])^2)
                + Pdk (1 - Pdk) - (1 - Pdk)(1 + Kd)(Pdk + (1 - Pdk)(1 + Kd) / 4) } / N
        E[i,j] = sum_r (w[r,j] p[r] + w[i,r] q[r])
        CI  = BI -/+ z * sqrt(Var)

    term by term as R package BI, ``R/BI.r`` (``Pdo``, ``Pde``, ``Kd``, ``term1.num``,
    ``term1.denom``, ``v.2``, ``BI.est``). A 5-category table is collapsed to 3 categories
    first. Every answer don't know (both arms answered): BI = 1, variance 0 (the package's
    documented edge case, from James 1996 p. 1425). Undefined (``estimate`` None): no answers,
    only one arm answered and all don't know, or Pde = 0 (no disagreement is possible by
    chance: every guess names the same arm and only that arm has guesses).
    """
    z = _z(conf_level, alternative)
    three = table.collapsed()
    cells = (
        (three.active.active, three.control.active),  # guess active: true active, control
        (three.active.control, three.control.control),  # guess control
    )
    dont_know = (three.active.dont_know, three.control.dont_know)
    n = sum(map(sum, cells)) + sum(dont_know)
    if n == 0:
        return _undefined(n, conf_level, alternative, "no answers")
    if sum(map(sum, cells)) == 0:
        if all(count > 0 for count in dont_know):
            return IndexResult(
                estimate=Fraction(1),
                variance=Fraction(0),
                standard_error=0.0,
                lower=None,
                upper=None,
                n=n,
                conf_level=conf_level,
                alternative=alternative,
                interval_reason="every answer is don't know: James' index is 1 by definition, "
                "with no variance (James et al. 1996, p. 1425)",
            )
        return _undefined(
            n,
            conf_level,
            alternative,
            "only one arm answered and every answer is don't know: James' index is undefined",
        )
    w = JAMES_WEIGHTS
    p = [[Fraction(cells[i][j], n) for j in range(2)] for i in range(2)]
    p_guess = [p[i][0] + p[i][1] for i in range(2)]  # P[i, ncol(P)]
    q_arm = [p[0][j] + p[1][j] for j in range(2)]  # P[nrow(P), j] - P[nrow(P) - 1, j]
    pdk = Fraction(sum(dont_know), n)
    agreement = 1 - pdk  # 1 - Pdk > 0 here: some answer is not don't know
    pdo = sum((w[i][j] * p[i][j] for i in range(2) for j in range(2)), Fraction(0)) / agreement
    expected = sum(
        (w[i][j] * p_guess[i] * q_arm[j] for i in range(2) for j in range(2)), Fraction(0)
    )
    if expected == 0:
        return _undefined(
            n,
            conf_level,
            alternative,
            "expected disagreement Pde is 0 (every guess names one arm and only that arm has "
            "guesses): James' kappa, hence its index, is undefined",
        )
    pde = expected / agreement**2
    kd = (pdo - pde) / pde
    estimate = (1 + pdk + agreement * kd) / 2
    term1_num = Fraction(0)
    for i in range(2):
        for j in range(2):
            extra = sum((w[r][j] * p_guess[r] + w[i][r] * q_arm[r] for r in range(2)), Fraction(0))
            term1_num += p[i][j] * agreement**2 * (agreement * w[i][j] - (1 + kd) * extra) ** 2
    term1_denom = 4 * expected**2
    v2 = pdk * agreement - agreement * (1 + kd) * (pdk + agreement * (1 + kd) / 4)
    variance = (term1_num / term1_denom + v2) / n
    return _with_interval(estimate, variance, n, conf_level, alternative, z, (0.0, 1.0))


# --------------------------------------------------------------------------- both


def blinding_indices(
    table: GuessTable,
    *,
    conf_level: float = 0.95,
    bang_alternative: Alternative = "two-sided",
    james_alternative: Alternative = "two-sided",
) -> BlindingIndices:
    """Bang's index per arm and James' index overall, as R package BI's ``BI(x)``."""
    return BlindingIndices(
        bang_active=bang_index(
            table.active, "active", conf_level=conf_level, alternative=bang_alternative
        ),
        bang_control=bang_index(
            table.control, "control", conf_level=conf_level, alternative=bang_alternative
        ),
        james=james_index(table, conf_level=conf_level, alternative=james_alternative),
    )


def tally(
    answers: Iterable[tuple[str, str, str | None]],
    *,
    active: str = "baclofen",
    control: str = "placebo",
    five_category: bool = False,
) -> GuessTable:
    """Count answers ``(true arm, guess, confidence)`` into a table.

    ``guess`` is ``active``, ``control`` or ``"dont_know"``; ``confidence`` is ``"strongly"``
    or ``"somewhat"`` (used only when ``five_category``; then required for every guess that
    is not don't know) or None. Anything else raises ValueError: a table must count every
    answer it is given.
    """
    keys3 = {active: 0, control: 1, DONT_KNOW: 2}
    counts = {active: [0] * 5, control: [0] * 5}
    for true_arm, guess, confidence in answers:
        if true_arm not in counts:
            raise ValueError(f"unknown arm {true_arm!r}")
        if guess not in keys3:
            raise ValueError(f"unknown guess {guess!r}")
        if not five_category or guess == DONT_KNOW:
            column = keys3[guess] if not five_category else 4
        elif confidence == STRONGLY:
            column = 0 if guess == active else 3
        elif confidence == SOMEWHAT:
            column = 1 if guess == active else 2
        else:
            raise ValueError(f"a 5-category guess needs its confidence, not {confidence!r}")
        counts[true_arm][column] += 1
    if five_category:
        return GuessTable(FiveCategory(*counts[active]), FiveCategory(*counts[control]))
    return GuessTable(ThreeCategory(*counts[active][:3]), ThreeCategory(*counts[control][:3]))


# --------------------------------------------------------------------------- helpers


def _check_counts(*counts: int) -> None:
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"a count must be a non-negative integer, not {count!r}")


def _mirror(guesses: ArmGuesses) -> ArmGuesses:
    if isinstance(guesses, ThreeCategory):
        return ThreeCategory(guesses.control, guesses.active, guesses.dont_know)
    return FiveCategory(
        guesses.strongly_control,
        guesses.somewhat_control,
        guesses.somewhat_active,
        guesses.strongly_active,
        guesses.dont_know,
    )


def _z(conf_level: float, alternative: str) -> float:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    if not 0 < conf_level < 1:
        raise ValueError(f"conf_level must be strictly between 0 and 1, not {conf_level!r}")
    # R: alpha <- (1 - conf.level) / 2 (two-sided) or 1 - conf.level; qnorm(alpha, lower=FALSE)
    alpha = (1 - conf_level) / 2 if alternative == "two-sided" else 1 - conf_level
    return NormalDist().inv_cdf(1 - alpha)


def _undefined(n: int, conf_level: float, alternative: str, reason: str) -> IndexResult:
    return IndexResult(
        estimate=None,
        variance=None,
        standard_error=None,
        lower=None,
        upper=None,
        n=n,
        conf_level=conf_level,
        alternative=alternative,
        reason=reason,
        interval_reason=reason,
    )


def _with_interval(
    estimate: Fraction,
    variance: Fraction,
    n: int,
    conf_level: float,
    alternative: str,
    z: float,
    bounds: tuple[float, float],
) -> IndexResult:
    """Wald interval as R package BI: est -/+ z SE; one-sided: the other limit at the bound."""
    if variance < 0:
        return IndexResult(
            estimate, variance, None, None, None, n, conf_level, alternative,
            interval_reason="the variance estimate is negative for this table: no interval",
        )  # fmt: skip
    se = math.sqrt(variance)
    if variance == 0:
        return IndexResult(
            estimate, variance, se, None, None, n, conf_level, alternative,
            interval_reason="the variance is 0 (e.g. every guess right, or every guess wrong): "
            "no normal-approximation interval",
        )  # fmt: skip
    lower = float(estimate) - z * se
    upper = float(estimate) + z * se
    if alternative == "less":
        lower = bounds[0]
    elif alternative == "greater":
        upper = bounds[1]
    return IndexResult(estimate, variance, se, lower, upper, n, conf_level, alternative)
