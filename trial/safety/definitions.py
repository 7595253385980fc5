"""The safety definitions every output shares: treatment-emergence and the safety population.

DESIGN sections 4 and 5 define them once; this module is their one home. The AE API
(``trial.safety.services``), the blinded bundle (``exports.tables``) and the DSMB reports
(``reports.counting``, ``reports.summaries``) all decide with these functions, so a change of
either definition reaches every output at once. Plain values in, a bool out: no ORM, so the
reports' counting engine can use them on its plain rows.
"""

from __future__ import annotations

from datetime import date

# Each definition in words, for the footnotes, listings and data dictionary that state it.
TREATMENT_EMERGENT = "onset on or after the first dose"
SAFETY_POPULATION = "randomized with a recorded first dose"


def is_treatment_emergent(onset: date, first_dose: date | None) -> bool:
    """``TREATMENT_EMERGENT``; with no dose recorded, not treatment-emergent. An adverse
    event's onset, or the date of a measurement (the report's liver findings)."""
    return first_dose is not None and onset >= first_dose


def in_safety_population(randomized: bool, first_dose: date | None) -> bool:
    """``SAFETY_POPULATION``."""
    return randomized and first_dose is not None
