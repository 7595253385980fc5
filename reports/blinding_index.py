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

Laid out as: the tables of guesses (``reports.blinding_guesses``), Bang's index
(``reports.blinding_bang``), James' index (``reports.blinding_james``), the result of an index
and its interval (``reports.blinding_interval``), and here both indices of one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.blinding_bang import bang_index
from reports.blinding_guesses import GuessTable
from reports.blinding_interval import Alternative, IndexResult
from reports.blinding_james import james_index


@dataclass(frozen=True)
class BlindingIndices:
    """Bang's index in each arm and James' index for the table."""

    bang_active: IndexResult
    bang_control: IndexResult
    james: IndexResult


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
