"""James' blinding index, one for the trial (James, Bloch, Lee, Kraemer and Fuller 1996).

The sources and the forms supported are in ``reports.blinding_index``; the tables come from
``reports.blinding_guesses`` and the result and its interval from ``reports.blinding_interval``.
"""

from __future__ import annotations

from fractions import Fraction

from reports.blinding_guesses import GuessTable
from reports.blinding_interval import Alternative, IndexResult, _undefined, _with_interval, _z

HALF = Fraction(1, 2)

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
