"""Give every failure one JSON shape: ``{"code", "status", "message", "errors"}``.

Code raises the typed errors below; the handlers here turn them, werkzeug's HTTP errors,
request-validation errors and anything unexpected into that shape. No stack trace, SQL or
internal detail ever reaches a client: unexpected errors are logged with a reference id that
the client also receives.
"""

from __future__ import annotations

import logging
import uuid

import marshmallow as ma
from flask import jsonify
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Machine-readable code"})
    status = ma.fields.Integer(required=True, metadata={"description": "HTTP status"})
    message = ma.fields.String(required=True, metadata={"description": "What went wrong"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        required=True,
        metadata={"description": "Messages per bad field (empty when no field is at fault)"},
    )


class TrialError(Exception):
    """Base of the errors services raise; each subclass fixes the HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class Unauthorized(TrialError):
    status, code = 401, "unauthorized"


class Forbidden(TrialError):
    status, code = 403, "forbidden"


class NotFound(TrialError):
    status, code = 404, "not_found"


class Conflict(TrialError):
    status, code = 409, "conflict"


class ValidationFailed(TrialError):
    status, code = 422, "validation_error"


class InvalidJSON(TrialError):
    """A body sent as JSON that cannot be read as JSON (or nests deeper than any body may)."""

    status, code = 400, "invalid_json"


class TooManyRequests(TrialError):
    status, code = 429, "too_many_requests"


class UnsupportedMediaType(TrialError):
    status, code = 415, "unsupported_media_type"


class RecordedRefusal(TrialError):
    """A refusal whose audit rows (and notices), written before it was raised, are kept.

    The one way a refused attempt stays on record: the service writes what must be kept,
    undoes anything else itself (e.g. rolls back to a savepoint), and raises this; the
    request that gets it commits the session instead of discarding it
    (``handle_trial_error``). A view never commits a refusal itself. Combine it with the
    error that gives the status: ``class Refused(RecordedRefusal, Forbidden)``.
    """


class ForbiddenRecorded(RecordedRefusal, Forbidden):
    """403, the attempt recorded (a wrong password at a step-up, a code-break refused)."""


class UnauthorizedRecorded(RecordedRefusal, Unauthorized):
    """401, the attempt recorded (a failed login)."""


class ConflictRecorded(RecordedRefusal, Conflict):
    """409, with a notice kept (a stratum with no slot left)."""


class ConfigurationError(RuntimeError):
    """Raised at start when a setting would make the service unsafe or wrong."""


def error_response(status: int, code: str, message: str, errors: dict | None = None):
    body = {"code": code, "status": status, "message": message, "errors": errors or {}}
    response = jsonify(body)
    response.status_code = status
    return response


def flatten_messages(messages: dict) -> dict[str, list[str]]:
    """Flatten webargs' ``{location: {field: [msg]}}`` into ``{field: [msg]}``.

    Nested fields are joined with dots (``items.3.score``) so each bad field is named.
    """
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value):
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            flat.setdefault(prefix or "_schema", []).extend(value)
        else:
            flat.setdefault(prefix or "_schema", []).append(str(value))

    for location_errors in messages.values():
        walk("", location_errors)
    return flat


def _nul_fields(view_args: dict) -> list[str]:
    """Name every path parameter holding a NUL character."""
    return [name for name, value in view_args.items() if "\x00" in str(value)]


def _takes_json_body(view) -> bool:
    arguments = getattr(view, "_apidoc", {}).get("arguments", {})
    return any(p.get("in") == "json" for p in arguments.get("parameters", []))


def screen_request_input():
    """Refuse, before any view runs, input the views would misread or a database would choke on.

    A body that is not declared as JSON, sent to a view that reads JSON, would be parsed as
    empty and answered "missing field" for every field; it gets a 415 that says what is wrong.
    A NUL character anywhere (path, query, body) cannot be stored by PostgreSQL and used to
    surface as a 500; it is refused on both databases with the fields named. A JSON body is
    parsed here, once, by ``trial.json_input`` (which the views' argument parser reads too):
    malformed or too deep is a 400; a lone surrogate, a NUL, a key given twice, an integer of
    more digits than any field takes, or NaN/Infinity is a 422 naming each field.
    """
    from flask import current_app, request

    from trial.json_input import request_json

    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if (
        view is not None
        and _takes_json_body(view)
        and not request.is_json
        and (request.content_length or request.mimetype)
    ):
        raise UnsupportedMediaType(
            f"Send the request body as JSON with 'Content-Type: application/json' "
            f"(got {request.mimetype or 'no content type'!r})."
        )
    fields = _nul_fields(request.view_args or {})
    for name, values in request.args.lists():
        if "\x00" in name or any("\x00" in item for item in values):
            fields.append(name)
    errors = {name: ["Contains a NUL character, which is not allowed."] for name in fields}
    if request.is_json:
        try:
            request_json(request)
        except ValidationFailed as refused:
            for name, messages in refused.errors.items():
                errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)
    return None


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def keep_recorded_refusal() -> None:
    """Commit what a ``RecordedRefusal`` left to keep (its audit rows, its notices)."""
    from trial.extensions import db

    db.session.commit()


def handle_trial_error(exc: TrialError):
    if isinstance(exc, RecordedRefusal):
        keep_recorded_refusal()
    return error_response(exc.status, exc.code, exc.message, exc.errors)


def handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    if status in (404, 405) and is_page_address():
        from trial.web.blueprint import error_page  # an address no route matched: a page

        return error_page(404, "There is no page at this address.")
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages:
        errors = flatten_messages(messages)
        named = ", ".join(sorted(errors))
        return error_response(422, "validation_error", f"Invalid input: {named}.", errors)
    if status == 400 and messages:
        # webargs' only 400: a body declared as JSON that does not parse.
        errors = flatten_messages(messages)
        message = " ".join(msg for msgs in errors.values() for msg in msgs)
        return error_response(400, "invalid_json", message or "Malformed request.", errors)
    if status == 413:
        return error_response(413, "payload_too_large", "The request body is too large.")
    message = data.get("message") or exc.description or exc.name
    response = error_response(status, _http_code(exc), message)
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def is_page_address() -> bool:
    """Whether the request's address is outside the JSON API (a person's browser)."""
    from flask import request

    return not request.path.startswith("/api/")


def handle_unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error, reference %s", reference)
    return error_response(
        500,
        "internal_error",
        f"An internal error occurred; nothing was saved. Reference: {reference}.",
    )


class TrialApi(Api):
    """flask-smorest's Api with our error shape in both the responses and the spec."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        app = self._app
        app.register_error_handler(TrialError, handle_trial_error)
        app.register_error_handler(HTTPException, handle_http_exception)
        app.register_error_handler(Exception, handle_unexpected)
