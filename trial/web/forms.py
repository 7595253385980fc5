"""Read a page's form through the API's own schema, so a page never has rules of its own.

A form posts strings under the body's own field names, nested ones dotted
(``vitals.heart_rate``, ``drinking.3.standard_drinks``). ``form_body`` turns them into the
body the JSON API would receive, typed as the schema's fields expect (a blank input is a
field not sent), and ``load_form`` loads it with that schema and the service's rule check
exactly as a JSON request is loaded (``trial.validation``): every error of both kinds in one
``ValidationFailed`` whose field names are the inputs' names. The service then enforces its
rules again, as for every caller.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import marshmallow as ma
from werkzeug.datastructures import MultiDict

from trial.validation import one_round_failure

_INTEGER = re.compile(r"[+-]?\d{1,18}")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


def _scalar(field: ma.fields.Field, text: str):
    """The typed value a JSON client would send for ``text``; unparseable text is passed
    as it is, so the schema refuses it with its own message."""
    if isinstance(field, ma.fields.Boolean):
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    if isinstance(field, ma.fields.Integer):
        return int(text) if _INTEGER.fullmatch(text) else text
    if isinstance(field, (ma.fields.Float, ma.fields.Decimal, ma.fields.Number)):
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text
        if not number.is_finite():
            return text
        return (
            int(number)
            if number == number.to_integral_value() and "." not in text
            else float(number)
        )
    return text


def _rows(form: MultiDict, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d{1,4})\.")
    return sorted({int(m.group(1)) for key in form for m in [pattern.match(key)] if m})


def _fields_of(schema: ma.Schema, form: MultiDict, prefix: str, clear: bool = False) -> dict:
    body: dict = {}
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        full = prefix + key
        if isinstance(field, ma.fields.Nested) and not field.many:
            nested = _fields_of(field.schema, form, full + ".", clear)
            if nested:
                body[key] = nested
        elif isinstance(field, ma.fields.Nested) or (
            isinstance(field, ma.fields.List) and isinstance(field.inner, ma.fields.Nested)
        ):
            inner = field.schema if isinstance(field, ma.fields.Nested) else field.inner.schema
            rows = [_fields_of(inner, form, f"{full}.{i}.", clear) for i in _rows(form, full + ".")]
            rows = [row for row in rows if row]  # a row left wholly blank is not sent
            if rows or f"{full}.present" in form:
                body[key] = rows
        elif isinstance(field, ma.fields.List):
            values = [v.strip() for v in form.getlist(full) if v.strip()]
            if values or f"{full}.present" in form:
                body[key] = [_scalar(field.inner, v) for v in values]
        else:
            sent = form.getlist(full)
            text = sent[-1] if sent else ""  # a checkbox follows its hidden "false"
            if text.strip():  # text is kept as typed (a password may end in a space)
                body[key] = (
                    text if isinstance(field, ma.fields.String) else _scalar(field, text.strip())
                )
            elif clear and sent:
                # An input emptied on a correction clears its value (or, for a value that may
                # not be empty, is refused as "Required" instead of passing unnoticed).
                body[key] = None
    return body


def form_body(schema: ma.Schema, form: MultiDict, prefix: str = "", *, clear=False) -> dict:
    """The JSON body ``schema`` would load, built from a page form's fields.

    Inputs the schema does not name (the CSRF token, a button) are not part of the body. A
    list whose every row is blank is not sent, unless the form says it is present
    (``NAME.present``), when it is sent empty. A blank input is a field not sent, except with
    ``clear`` (a correction form, which shows every current value): a blank input is then sent
    as null, which clears a value that may be empty, as JSON's null does, and is refused for
    one that may not.
    """
    return _fields_of(schema, form, prefix, clear)


def load_form(schema: ma.Schema, body: dict, **path) -> dict:
    """Load ``body`` with the API's schema and its rule check, as a JSON request is loaded:
    raise one ``ValidationFailed`` naming every bad field of both kinds."""
    try:
        return schema.load(body)
    except ma.ValidationError as error:
        raise one_round_failure(schema, error.messages, error.valid_data, body, path) from None


def read_form(schema: ma.Schema, form: MultiDict, *, clear=False, **path) -> dict:
    """``load_form(schema, form_body(schema, form, clear=clear))``: the page's input, loaded."""
    return load_form(schema, form_body(schema, form, clear=clear), **path)


# Marshmallow's generic messages, as a form says them to the person filling it in (the JSON
# API keeps marshmallow's wording).
PLAIN_MESSAGES = {
    "Missing data for required field.": "Required: fill this in.",
    "Field may not be null.": "Required: fill this in.",
    "Not a valid integer.": "Enter a whole number.",
    "Not a valid number.": "Enter a number.",
    "Not a valid date.": "Enter a date as year-month-day, for example 2026-11-02.",
    "Not a valid boolean.": "Choose yes or no.",
}
_ITEM_INDEX = re.compile(r"(\.\d+)+$")


def form_errors(refused, labels=None) -> dict[str, list[str]]:
    """A refusal as a form shows it, for ``components.error_summary`` and the fields.

    An invalid form's messages go under their inputs (a list item's under its list when the
    form has no input of the item's own name), in the order of the form's ``labels`` when
    given; what names no input of the form (a conflict, a rule about the whole form) goes at
    the top, under ``_schema``, after the refusal's own message unless the refusal is a plain
    invalid form. A stale version's (412) fields are the record's current values, not errors.
    """
    from trial.errors import ValidationFailed

    top = [] if isinstance(refused, ValidationFailed) and refused.errors else [refused.message]
    errors: dict[str, list[str]] = {}
    for name, messages in ({} if refused.status == 412 else refused.errors).items():
        plain = [PLAIN_MESSAGES.get(message, message) for message in messages]
        if labels is None or name in labels:
            errors.setdefault(name, []).extend(plain)
        elif _ITEM_INDEX.sub("", name) in labels:
            errors.setdefault(_ITEM_INDEX.sub("", name), []).extend(plain)
        else:
            top.extend(plain)
    if labels is not None:
        order = {name: n for n, name in enumerate(labels)}
        errors = dict(sorted(errors.items(), key=lambda item: order[item[0]]))
    return {"_schema": top, **errors} if top else errors
