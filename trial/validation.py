"""Report every error of a request body in one round: its schema errors and its rule errors.

A body is checked in two layers: its schema (types, ranges, required fields) and the rules
a service enforces with the data it holds (a consent date not in the future at the site, a
serious adverse event with a seriousness criterion, a dose change with a reason). Without
this module a body with errors of both kinds was answered with the schema errors only; the
user fixed them and was then told about the rest.

Each rule has one home, its service, which enforces it on every caller (HTTP, command line,
demo). A service also declares, with ``checks_body``, a check that runs its rules on the
part of a body that loaded; when a body fails its schema, the argument parser
(``TrialParser.handle_error``) runs that check on the fields that did load and answers one
422 naming every field of both kinds. A body that passes its schema reaches the view and the
service checks the rules as before. A check skips each rule whose inputs are missing (they
failed the schema, and are named already).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import g
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from trial.errors import ValidationFailed, flatten_messages
from trial.json_input import EMPTY, request_json

# (actor, values that loaded, names of the fields that did not, **path parameters) -> None;
# raises ValidationFailed naming each rule's field (body keys), or the request's own refusal
# (403, 404, 409) when the request could not succeed whatever its body.
RuleCheck = Callable[..., None]
_CHECKS: dict[type, RuleCheck] = {}


def checks_body(*schemas) -> Callable[[RuleCheck], RuleCheck]:
    """Declare ``check`` as the rules of the bodies loaded by ``schemas`` (classes)."""

    def register(check: RuleCheck) -> RuleCheck:
        for schema in schemas:
            _CHECKS[schema if isinstance(schema, type) else type(schema)] = check
        return check

    return register


def rule_check_for(schema) -> RuleCheck | None:
    return _CHECKS.get(schema if isinstance(schema, type) else type(schema))


def raise_errors(errors: dict[str, list[str]]) -> None:
    """Refuse with a 422 naming every field in ``errors`` (nothing if it is empty)."""
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)


def merge_errors(errors: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    """Add ``more`` to ``errors`` in place, each message once per field."""
    for name, messages in more.items():
        present = errors.setdefault(name, [])
        present.extend(m for m in messages if m not in present)


def loaded_part(schema: ma.Schema, messages: dict, valid_data: dict | None, raw: dict):
    """(values that loaded, names of the fields that did not) from a failed load.

    A list with a bad item keeps the loaded part of each item, so its indexes still name
    the items sent; when marshmallow dropped an item (a null in a list of objects) the
    indexes would shift, and the whole list counts as not loaded.
    """
    names = {field.data_key or name: name for name, field in schema.load_fields.items()}
    # A field whose own value was refused; one with errors inside (a nested form, an item of
    # a list) keeps what loaded of it, each part at its place.
    failed = {
        names.get(key, key)
        for key, problem in messages.items()
        if key != "_schema" and not isinstance(problem, dict)
    }
    values = {k: v for k, v in (valid_data or {}).items() if k not in failed}
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        if isinstance(messages.get(key), dict) and isinstance(values.get(name), list):
            sent = raw.get(key)
            if not isinstance(sent, list) or len(sent) != len(values[name]):
                del values[name]
                failed.add(name)
    return values, frozenset(failed)


def one_round_failure(
    schema: ma.Schema, messages: Any, valid_data: dict | None, raw: Any, path: dict
) -> ValidationFailed:
    """The schema's errors and those of the rules on the part that loaded, as one 422."""
    errors = flatten_messages({"json": messages})
    check = rule_check_for(schema)
    if check is not None and isinstance(raw, dict) and isinstance(messages, dict):
        values, failed = loaded_part(schema, messages, valid_data, raw)
        try:
            check(g.current_user, values, failed, **path)
        except ValidationFailed as rules:
            merge_errors(errors, rules.errors)
    return ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)


class TrialParser(FlaskParser):
    """webargs' Flask parser reading the body ``trial.json_input`` parsed, and reporting
    schema and rule errors of a body together."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        value = request_json(req)
        return core.missing if value is EMPTY else value

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        messages = error.messages  # {location: {field: [message]}}
        if rule_check_for(schema) is not None and set(messages) == {"json"}:
            raise one_round_failure(
                schema, messages["json"], error.valid_data, request_json(req), req.view_args or {}
            )
        super().handle_error(
            error, req, schema, error_status_code=error_status_code, error_headers=error_headers
        )


def checks_correction(patch_schema, model, revalidate, patch_keys=None) -> None:
    """Declare the rules of a captured record's correction body (``PATCH /{form}/{id}``).

    They are the record as the part that loaded would leave it, checked by ``revalidate`` as
    the correction view checks a body that loads (``trial.records.views``); a field the
    schema refused keeps no value, so no rule judges its old one instead. ``patch_keys``: the
    body keys of fields renamed in the PATCH body, which the errors name.
    """
    from trial.records.registry import get_visible_record
    from trial.records.services import ensure_correctable

    keys = patch_keys or {}

    @checks_body(patch_schema)
    def check(actor, values, failed, record_id):
        record, participant = get_visible_record(actor, model.ENTITY, record_id)
        ensure_correctable(record)
        merged = {f: getattr(record, f) for f in model.AUDITED_FIELDS if f not in failed}
        merged.update((k, v) for k, v in values.items() if k in model.AUDITED_FIELDS)
        try:
            revalidate(record, participant, merged)
        except ValidationFailed as refused:
            named = {keys.get(k, k): messages for k, messages in refused.errors.items()}
            raise ValidationFailed(refused.message, named) from None
