"""Variables of the blinded bundle: what the data dictionary says about each column, and the
one place every format takes a column's type from.

A variable's ``type`` decides how each format stores it:

=========  ====================  ==========================================  ===================
type       CSV                   SAS transport (XPT v5)                      Parquet
=========  ====================  ==========================================  ===================
string     text                  character, cut at 200 bytes                 string
integer    ``2``                 numeric (8 bytes)                           int64
number     ``2.5``               numeric (8 bytes)                           float64
date       ``2026-01-13``        numeric: days since 1960-01-01, ``DATE9.``  date32
datetime   ``...T08:30:00Z``     numeric: seconds since 1960-01-01T00:00:00  timestamp(us, UTC)
                                 UTC, ``DATETIME20.``
boolean    ``true``/``false``    numeric 1/0                                 bool
=========  ====================  ==========================================  ===================

XPT names and labels follow two rules a SAS programmer can predict (``short_names`` and
``xpt_label``); the dictionary keeps each variable's full name and label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

TYPES = ("string", "integer", "number", "date", "datetime", "boolean")
ORIGINS = ("entered", "derived", "assigned")
LABEL_MAX = 40  # SAS transport v5: bytes of a variable's or a file's label
SHORT_MAX = 8  # SAS transport v5: characters of a variable's or a file's name
SHORT_PART = 3  # characters each part of a long name gives its short name
NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# How a date or a date-time is stored in SAS transport: its SAS value and its format.
SAS_EPOCH = date(1960, 1, 1)
SAS_EPOCH_INSTANT = datetime(1960, 1, 1, tzinfo=UTC)
XPT_FORMATS = {"date": "DATE9.", "datetime": "DATETIME20."}


# How each format stores each type, in words (the bundle's README.txt prints its format's).
STORAGE = {
    "csv": {
        "string": "text (a cell starting with = + - @ tab or CR gets a leading ')",
        "integer": "a whole number (2)",
        "number": "a decimal number (2.5)",
        "date": "ISO 8601 date (2026-01-13)",
        "datetime": "ISO 8601 instant in UTC (2026-01-13T08:30:00Z)",
        "boolean": "true or false",
    },
    "xpt": {
        "string": "character, at most 200 bytes of UTF-8",
        "integer": "numeric",
        "number": "numeric",
        "date": "numeric SAS date (days since 1960-01-01), format DATE9.",
        "datetime": "numeric SAS datetime (seconds since 1960-01-01 00:00:00 UTC), format "
        "DATETIME20.",
        "boolean": "numeric, 1 (true) or 0 (false)",
    },
    "parquet": {
        "string": "string",
        "integer": "int64",
        "number": "float64",
        "date": "date32 (days since 1970-01-01)",
        "datetime": "timestamp[us, tz=UTC]",
        "boolean": "bool",
    },
}
SHORT_NAME_RULE = (
    "A name of at most 8 characters is kept, in upper case (site -> SITE). A longer name is "
    "cut at its underscores and each part gives its first 3 characters, joined, upper case, "
    "cut to 8 (participant_id -> PARID, first_dose_date -> FIRDOSDA, disposition -> DIS). A "
    "name already taken by an earlier column of the same file gets a counter 1, 2, ... "
    "appended, replacing its last characters only as far as needed to stay within 8 "
    "(DIS -> DIS1, PCTHEADR -> PCTHEAD1). A file's SAS name follows the same rule "
    "(drinking_outcomes -> DRIOUT)."
)
LABEL_RULE = (
    "A label longer than 40 bytes is cut after the last whole word that fits in 40 (a single "
    "longer word is cut at 40); dictionary.csv and this file keep the full labels."
)


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
        if not NAME.match(self.name):
            raise ValueError(f"{self.name}: a name is lower case letters, digits and _")
        if not self.label.strip() or "\n" in self.label:
            raise ValueError(f"{self.name}: a label is one line of text")
        if self.origin == "derived" and not self.derivation:
            raise ValueError(f"{self.name}: a derived variable states its derivation")


def short_names(names: list[str]) -> dict[str, str]:
    """Map each name to its SAS v5 name (<= 8 characters, unique among ``names``): the one
    rule for the names of an XPT file's variables (``names``: the file's columns in order)
    and of the file itself (``[file name]``).

    1. A name of at most 8 characters is kept, in upper case (``site`` -> ``SITE``,
       ``item_10`` -> ``ITEM_10``).
    2. A longer name is cut at its underscores and each part gives its first 3 characters
       (all of a shorter part), joined, in upper case, cut to 8 (``participant_id`` ->
       ``PARID``, ``first_dose_date`` -> ``FIRDOSDA``, ``disposition`` -> ``DIS``).
    3. A name already taken by an earlier column of the same file gets a counter 1, 2, ...
       appended, replacing its last characters only as far as needed to stay within 8
       (``DIS`` -> ``DIS1``; ``PCTHEADR`` -> ``PCTHEAD1``).

    The mapping depends only on the names and their order, so it is stable between bundles
    and a column keeps its short name when columns are added after it.
    """
    taken: set[str] = set()
    mapping: dict[str, str] = {}
    for name in names:
        base = short_name(name)
        candidate, counter = base, 1
        while candidate in taken:
            suffix = str(counter)
            candidate = base[: SHORT_MAX - len(suffix)] + suffix
            counter += 1
        taken.add(candidate)
        mapping[name] = candidate
    return mapping


def short_name(name: str) -> str:
    """Rules 1 and 2 of ``short_names`` for one name (before any clash is broken)."""
    if len(name) <= SHORT_MAX:
        return name.upper()
    return "".join(part[:SHORT_PART] for part in name.split("_") if part).upper()[:SHORT_MAX]


def xpt_label(label: str, limit: int = LABEL_MAX) -> str:
    """A label as SAS transport holds it: whole when it fits in ``limit`` bytes (UTF-8), else
    cut after the last whole word that fits (``Study drug (tablets; identical in both arms)``
    -> ``Study drug (tablets; identical in both``); a first word longer than the limit is cut
    at the limit. The dictionary keeps the full label."""
    if _size(label) <= limit:
        return label
    kept = ""
    for word in re.finditer(r"\S+", label):
        if _size(label[: word.end()]) > limit:
            break
        kept = label[: word.end()]
    if kept:
        return kept
    return label.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def sas_date(value: date) -> float:
    """A date as SAS holds it: days since 1960-01-01."""
    if isinstance(value, datetime):
        raise TypeError(f"a date column holds a date-time: {value!r}")
    return float(value.toordinal() - SAS_EPOCH.toordinal())


def sas_datetime(value: datetime) -> float:
    """An instant as SAS holds it: seconds since 1960-01-01T00:00:00 UTC (a value without a
    time zone is taken as UTC, as the database stores instants)."""
    if not isinstance(value, datetime):
        raise TypeError(f"a date-time column holds {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - SAS_EPOCH_INSTANT).total_seconds()
