"""A reason is text a person can read: one rule for every place a reason is required.

A correction, a withdrawal, a role change, a code-break each need a reason, recorded in the
audit trail for an inspector to read. ``str.strip()`` removes spaces but not a zero-width
space (U+200B), a byte order mark (U+FEFF), a word joiner, a Hangul filler or a line of
combining marks: a "reason" made only of those was accepted and audited as a reason nobody
can read. ``clean_reason`` trims what cannot be seen from both ends and answers None when
nothing visible is left; ``ReasonField`` applies it to a request body, and the services call
``require_reason`` (or ``clean_reason``) so the command line and the demo obey the same rule.
"""

from __future__ import annotations

import unicodedata

import marshmallow as ma
from marshmallow import validate as v

from trial.errors import ValidationFailed

REASON_MAX = 2000
# Characters that show nothing on their own: controls, format characters (zero-width space
# and joiners, BOM, bidirectional marks, tags), separators, unassigned and private code
# points, surrogates, and combining marks (which only decorate a visible character).
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}
# Letters and symbols drawn as blanks.
_BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u180e"}
# What may be trimmed from the ends of a reason (not combining marks: they belong to the
# character before them).
_TRIMMED = {"Cc", "Cf", "Zs", "Zl", "Zp"}
NOT_A_REASON = (
    "Give a reason a person can read: this one is empty or made only of spaces or "
    "invisible characters."
)


def _visible(character: str) -> bool:
    return character not in _BLANK and unicodedata.category(character) not in _INVISIBLE


def _trimmed(character: str) -> bool:
    return character in _BLANK or unicodedata.category(character) in _TRIMMED


def clean_reason(text: str | None) -> str | None:
    """The reason without invisible characters at either end, or None if none is visible."""
    if not text or not any(_visible(c) for c in text):
        return None
    start, end = 0, len(text)
    while _trimmed(text[start]):
        start += 1
    while _trimmed(text[end - 1]):
        end -= 1
    return text[start:end]


def require_reason(text: str | None, field: str = "reason", what: str = "this change") -> str:
    """The cleaned reason, or a 422 naming ``field`` when there is none a person can read."""
    cleaned = clean_reason(text)
    if cleaned is None:
        raise ValidationFailed(f"A reason is required for {what}.", {field: [NOT_A_REASON]})
    return cleaned


class ReasonField(ma.fields.String):
    """A required reason in a request body: at most 2,000 characters, some of them visible;
    loaded trimmed of invisible characters at its ends."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", v.Length(min=1, max=REASON_MAX))
        kwargs.setdefault("metadata", {"description": "Why (audited); visible text required"})
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        cleaned = clean_reason(text)
        if cleaned is None:
            raise ma.ValidationError(NOT_A_REASON)
        return cleaned
