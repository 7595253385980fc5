"""The result of one blinding index, and its confidence interval.

Shared by Bang's and James' indices (``reports.blinding_bang``, ``reports.blinding_james``):
both end the same way, with an exact estimate and variance and a Wald interval as the R package
BI forms it, or with no value and the reason why (see ``reports.blinding_index``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

Alternative = Literal["two-sided", "less", "greater"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")


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
