"""Variables of the blinded bundle: what the data dictionary says about each column."""

from __future__ import annotations

from dataclasses import dataclass

TYPES = ("string", "integer", "number", "date", "datetime", "boolean")
ORIGINS = ("entered", "derived", "assigned")
LABEL_MAX = 40  # SAS transport v5
SHORT_MAX = 8


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str
    unit: str = ""
    allowed: str = ""
    origin: str = "entered"
    derivation: str = ""

    def __post_init__(self):
        if self.type not in TYPES or self.origin not in ORIGINS:
            raise ValueError(f"{self.name}: bad type or origin")
        if len(self.label) > LABEL_MAX:
            raise ValueError(f"{self.name}: label over {LABEL_MAX} characters")
        if self.origin == "derived" and not self.derivation:
            raise ValueError(f"{self.name}: a derived variable states its derivation")


def short_names(names: list[str]) -> dict[str, str]:
    """Map each name to a SAS v5 name (<= 8 characters, unique in its table).

    Names that fit keep their spelling (upper case); longer ones take the first three
    letters of each word; a clash is broken with a counter in the last characters. The
    mapping depends only on the names and their order, so it is stable between bundles.
    """
    taken: set[str] = set()
    mapping: dict[str, str] = {}
    for name in names:
        if len(name) <= SHORT_MAX:
            candidate = name.upper()
        else:
            candidate = "".join(part[:3] for part in name.split("_") if part).upper()[:SHORT_MAX]
        base, counter = candidate, 1
        while candidate in taken:
            suffix = str(counter)
            candidate = base[: SHORT_MAX - len(suffix)] + suffix
            counter += 1
        taken.add(candidate)
        mapping[name] = candidate
    return mapping
