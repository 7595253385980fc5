"""Endpoints every captured form has: read one, correct it with a reason, mark it in error.

Built by ``add_record_endpoints`` for each form; the rules (site scoping, reason, audit,
signature invalidation, re-validation of the corrected record, the version precondition)
are the operations ``correct_any_record`` and ``mark_any_record_in_error`` in
``trial.records.services``, which the views only call. A record's ``version`` is its ETag: a
change may name the version it was made from (``If-Match`` or the body's ``version``), and
is refused with 412 if the record has moved on since.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import g, request

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.records.registry import get_visible_record, register_revalidation
from trial.records.schemas import CHANGE_REASON, VERSION, ReasonSchema
from trial.records.services import correct_any_record, mark_any_record_in_error
from trial.records.versions import MAX_VERSION, etag

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
READERS = (*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)

__all__ = ["READERS", "SITE_STAFF", "add_record_endpoints"]

# OpenAPI: the precondition a change may carry, and the header every answer with one record has.
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": 'The record\'s ETag as read (e.g. "3"): if the record has changed since, '
    "the request is refused with 412 naming its current version and values, and nothing is "
    "written. Optional (a request without it changes the record as it is now); the body's "
    "`version` says the same.",
}
ETAG = {
    "ETag": {
        "description": 'The record\'s version as an entity tag (e.g. "3"), for If-Match.',
        "schema": {"type": "string"},
    }
}
_ENTITY_TAG = re.compile(r'"([0-9]{1,10})"|([0-9]{1,10})')


def with_etag(body, version: int):
    """A view's answer with the record's ETag."""
    return body, {"ETag": etag(version)}


def requested_version(body: dict) -> int | None:
    """The version a change is made from: ``If-Match`` and/or the body's ``version`` (taken
    out of ``body``); None when neither is given, or ``If-Match: *`` (any version)."""
    in_body = body.pop(VERSION, None)
    header = request.headers.get("If-Match")
    in_header = None if header is None else _if_match_version(header)
    if in_body is not None and in_header is not None and in_body != in_header:
        message = f"The body's version {in_body} and If-Match's {in_header} differ: send one."
        raise ValidationFailed(
            "Invalid input: If-Match, version.",
            {"If-Match": [message], VERSION: [message]},
        )
    return in_body if in_body is not None else in_header


def _if_match_version(header: str) -> int | None:
    text = header.strip()
    if text == "*":
        return None
    match = _ENTITY_TAG.fullmatch(text)
    version = int(match.group(1) or match.group(2)) if match else 0
    if not 1 <= version <= MAX_VERSION:
        raise ValidationFailed(
            "Invalid input: If-Match.",
            {
                "If-Match": [
                    'Give the one ETag the record was read with, such as "3" (a weak or '
                    "listed tag is not a version)."
                ]
            },
        )
    return version


def add_record_endpoints(
    blp: Blueprint,
    *,
    model,
    path: str,
    dump_schema,
    patch_schema,
    revalidate: Callable | None = None,
    patch_keys: dict[str, str] | None = None,
) -> None:
    """GET /{path}/{id}, PATCH /{path}/{id} and POST /{path}/{id}/entered-in-error.

    ``revalidate``, if given, is registered as the record type's check
    (``register_revalidation``; a package may register it beside its services instead).
    ``patch_keys`` are the PATCH body keys of fields renamed there (see ``patch_schema_for``);
    errors name them.
    """
    entity = model.ENTITY
    if revalidate is not None:
        register_revalidation(model, revalidate)
    # The PATCH body key of each field (a loaded body is keyed by attribute), for the 412.
    keys = {
        field.attribute or name: field.data_key or name
        for name, field in patch_schema().load_fields.items()
    }
    keys.update(patch_keys or {})

    @blp.route(f"/{path}/<int:record_id>", methods=["GET"], endpoint=f"get_{entity}")
    @allow(*READERS)
    @blp.response(200, dump_schema, headers=ETAG)
    def get_record(record_id):
        record = get_visible_record(g.current_user, entity, record_id)[0]
        return with_etag(record, record.version)

    get_record.__doc__ = f"Show one {entity.replace('_', ' ')} record (404 at another site)."

    @blp.route(f"/{path}/<int:record_id>", methods=["PATCH"], endpoint=f"correct_{entity}")
    @allow(*SITE_STAFF)
    @blp.arguments(patch_schema)
    @blp.response(200, dump_schema, headers=ETAG)
    @blp.doc(parameters=[IF_MATCH])
    def correct(body, record_id):
        expected = requested_version(body)
        reason = body.pop(CHANGE_REASON)
        record = correct_any_record(
            g.current_user, entity, record_id, body, reason, expected_version=expected, names=keys
        )
        db.session.commit()
        return with_etag(record, record.version)

    correct.__doc__ = (
        f"Correct a {entity.replace('_', ' ')} record; a reason is required "
        f"and every changed field is audited with old and new value. A stale If-Match or "
        f"version is refused with 412; a body that changes nothing with 422 no_change."
    )

    @blp.route(
        f"/{path}/<int:record_id>/entered-in-error",
        methods=["POST"],
        endpoint=f"mark_{entity}_in_error",
    )
    @allow(*SITE_STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, dump_schema, headers=ETAG)
    @blp.doc(parameters=[IF_MATCH])
    def mark_in_error(body, record_id):
        expected = requested_version(body)
        record = mark_any_record_in_error(
            g.current_user, entity, record_id, body["reason"], expected_version=expected
        )
        db.session.commit()
        return with_etag(record, record.version)

    mark_in_error.__doc__ = (
        f"Mark a {entity.replace('_', ' ')} record as entered in error "
        f"(it is kept, audited, and leaves every output); a stale If-Match or version is "
        f"refused with 412."
    )
