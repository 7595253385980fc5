"""The randomization list (unblinded side only): generate, import, verify, summarise.

``generation`` draws the list from the protocol and a fresh seed and stores it encrypted;
``importing`` loads one from a CSV file; ``verification`` checks the stored list against its
seed and the allocations against the list; ``summary`` gives the per-stratum figures.
"""

from randomization.lists.generation import (
    GENERATOR_NAME,
    POOL_STRATUM,
    generate,
    list_loaded,
    require_unblinded_statistician,
)
from randomization.lists.importing import import_list, parse_import
from randomization.lists.summary import summary
from randomization.lists.verification import VerifyReport, verify

__all__ = [
    "GENERATOR_NAME",
    "POOL_STRATUM",
    "VerifyReport",
    "generate",
    "import_list",
    "list_loaded",
    "parse_import",
    "require_unblinded_statistician",
    "summary",
    "verify",
]
