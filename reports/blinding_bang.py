"""Bang's blinding index, one per arm (Bang, Ni and Davis 2004).

The sources and the forms supported are in ``reports.blinding_index``; the tables come from
``reports.blinding_guesses`` and the result and its interval from ``reports.blinding_interval``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from reports.blinding_guesses import ArmGuesses, ThreeCategory
from reports.blinding_interval import Alternative, IndexResult, _undefined, _with_interval, _z

HALF = Fraction(1, 2)

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
