"""The protocol file's ``[[edit_checks]]``: change a built-in check, or add a range check.

Each entry names a rule by ``id``. For a built-in rule (``rules.BUILT_IN_RULES``) it may set
``threshold``, ``enabled`` and ``message``; its condition (kind, form, field, test) is fixed.
Any other id adds a rule and gives all of ``kind``, ``form``, ``field``, ``threshold`` and
``message`` (and ``test`` for labs). Validated when the app starts, every bad setting named.
"""

from __future__ import annotations

from dataclasses import replace

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.errors import ConfigurationError
from trial.forms.edit_checks.rules import (
    BUILT_IN_RULES,
    FORM_FIELDS,
    KIND_FORMS,
    KINDS,
    SAMPLE_VALUES,
    Rule,
    kind_fields,
)

BUILT_IN = {rule.id: rule for rule in BUILT_IN_RULES}
CONDITION_KEYS = ("kind", "form", "field", "test")
# The threshold each kind accepts: (lowest, whether the lowest itself is allowed, highest).
THRESHOLDS = {
    "above": (0, True, None),
    "below": (0, False, None),
    "above_uln": (0, False, None),
    "change_since_previous": (0, False, None),
    "calendar_coverage": (0, False, 1),
}


def _lab_tests() -> tuple[str, ...]:
    # Imported here, not above: the protocol loader imports this module, and the forms'
    # models import the protocol.
    from trial.forms.models import LAB_UNITS

    return tuple(LAB_UNITS)


class EditCheckEntry(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    id = f.String(required=True, validate=v.Regexp(r"^[a-z][a-z0-9_]{0,79}$"))
    enabled = f.Boolean(truthy={True}, falsy={False})
    threshold = f.Float(allow_nan=False)
    message = f.String(validate=v.Length(min=1, max=1000))
    kind = f.String(validate=v.OneOf(KINDS))
    form = f.String(validate=v.OneOf(tuple(FORM_FIELDS)))
    field = f.String(validate=v.Length(min=1, max=80))
    test = f.String(validate=v.Length(min=1, max=20))

    @ma.validates_schema(skip_on_field_errors=True)
    def _complete(self, entry, **_):
        base = BUILT_IN.get(entry["id"])
        if base is not None:
            fixed = [key for key in CONDITION_KEYS if key in entry]
            if fixed:
                raise ma.ValidationError(
                    {
                        key: [
                            f"built-in rule {entry['id']!r} has a fixed condition; set "
                            "threshold, enabled or message"
                        ]
                        for key in fixed
                    }
                )
            rule = replace(base, **entry)
        else:
            missing = [
                key for key in ("kind", "form", "field", "threshold", "message") if key not in entry
            ]
            if missing:
                raise ma.ValidationError({key: [f"a new rule needs {key}"] for key in missing})
            rule = Rule(**entry)
        raise_if_problems(rule_problems(rule))


def raise_if_problems(problems: dict) -> None:
    if problems:
        raise ma.ValidationError(problems)


def rule_problems(rule: Rule) -> dict[str, list[str]]:
    """What is wrong with a rule as the protocol would leave it, by setting."""
    problems: dict[str, list[str]] = {}
    if rule.form not in KIND_FORMS[rule.kind]:
        problems["form"] = [
            f"a rule of kind {rule.kind} applies to {', '.join(KIND_FORMS[rule.kind])}"
        ]
        return problems
    fields = kind_fields(rule.kind, rule.form)
    if rule.field not in fields:
        problems["field"] = [f"a {rule.form} rule reads one of {', '.join(fields)}"]
    if rule.form == "labs" and rule.test not in _lab_tests():
        problems["test"] = [f"a labs rule names its test, one of {', '.join(_lab_tests())}"]
    elif rule.form != "labs" and rule.test is not None:
        problems["test"] = ["only a labs rule names a test"]
    low, low_allowed, high = THRESHOLDS[rule.kind]
    if (
        rule.threshold < low
        or (rule.threshold == low and not low_allowed)
        or (high is not None and rule.threshold > high)
    ):
        bound = ">=" if low_allowed else ">"
        upper = f" and <= {high}" if high is not None else ""
        problems["threshold"] = [
            f"a rule of kind {rule.kind} needs a threshold {bound} {low}{upper}"
        ]
    try:
        rule.message.format(threshold=rule.threshold, **SAMPLE_VALUES[rule.kind])
    except (KeyError, IndexError) as exc:
        names = ", ".join(["threshold", *SAMPLE_VALUES[rule.kind]])
        problems["message"] = [
            f"unknown placeholder {exc}; a message of kind {rule.kind} may use {names}"
        ]
    except ValueError as exc:
        problems["message"] = [f"cannot be formatted: {exc}"]
    return problems


class EditChecksField(f.Field):
    """The ``[[edit_checks]]`` list of a protocol file, loaded as the rules to run: the
    built-ins with the file's changes, in their order, then the file's own rules."""

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", lambda: BUILT_IN_RULES)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[Rule, ...]:
        if not isinstance(value, list):
            raise ma.ValidationError("must be a list of [[edit_checks]] tables")
        # One entry at a time: with many=True one entry's bad field would skip the others'
        # whole-rule checks, and each bad setting is to be named at once.
        entries, errors = [], {}
        for index, item in enumerate(value):
            try:
                entries.append(EditCheckEntry().load(item))
            except ma.ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ma.ValidationError(errors)
        ids = [entry["id"] for entry in entries]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ma.ValidationError(f"each rule once: {', '.join(twice)} listed twice")
        changes = {entry["id"]: entry for entry in entries}
        rules = [replace(rule, **changes.get(rule.id, {})) for rule in BUILT_IN_RULES]
        rules += [Rule(**entry) for entry in entries if entry["id"] not in BUILT_IN]
        return tuple(rules)


def _flatten(messages, prefix: str) -> list[str]:
    if isinstance(messages, dict):
        return [
            line
            for key, value in messages.items()
            for line in _flatten(value, prefix if key == "_schema" else f"{prefix}.{key}")
        ]
    if isinstance(messages, list):
        return [line for message in messages for line in _flatten(message, prefix)]
    return [f"{prefix}: {messages}"]


def load_edit_checks(raw_protocol: dict) -> tuple[Rule, ...]:
    """The rules a protocol (its TOML as read) asks for; ConfigurationError naming each bad
    setting (``edit_checks.2.threshold: ...``)."""
    if "edit_checks" not in raw_protocol:
        return BUILT_IN_RULES
    try:
        return EditChecksField().deserialize(raw_protocol["edit_checks"])
    except ma.ValidationError as exc:
        problems = "; ".join(sorted(_flatten(exc.messages, "edit_checks")))
        raise ConfigurationError(f"protocol edit checks have bad settings: {problems}") from exc
