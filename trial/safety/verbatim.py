"""Rules on the verbatim term itself, before any dictionary is consulted.

Death is an outcome, not an adverse event (MedDRA Term Selection: Points to Consider, and
ICH E2B, where death is reported as a seriousness criterion and an outcome): a fatal event is
recorded under its cause ("Myocardial infarction", "Intentional overdose"), with outcome
fatal, grade 5 and the criterion death. A verbatim that says only that the participant died
gives the DSMB a "Death" row instead of the cause they need, so it is refused. When the cause
is not yet known the site reports what is known ("Sudden death", "Found unresponsive",
"Cardiac arrest") and corrects the term when the cause is known.
"""

from __future__ import annotations

import re

# Verbatims that state only that the participant died, as written by sites (any case and
# spacing; surrounding punctuation is ignored). "Sudden death" is not among them: it is a
# MedDRA preferred term of its own, describing how the death happened.
DEATH_ONLY = frozenset(
    {
        "death",
        "died",
        "dead",
        "deceased",
        "death nos",
        "exitus",
        "passed away",
        "patient died",
        "participant died",
        "subject died",
        "pt died",
        "found dead",
        "expired",
        "fatal",
        "fatal outcome",
    }
)
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")

DEATH_ONLY_MESSAGE = (
    "Report the cause of death as the term, not the death itself: death is the outcome "
    "(outcome fatal, grade 5, criterion death). If the cause is not known yet, report what "
    "is known (for example 'Sudden death' or 'Cardiac arrest') and correct the term later."
)


def states_only_death(term: str) -> bool:
    """Whether the verbatim says only that the participant died (see the module's why)."""
    key = " ".join(term.split()).casefold()
    return _EDGE_PUNCTUATION.sub("", key) in DEATH_ONLY
