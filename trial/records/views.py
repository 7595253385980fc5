"""Endpoints every captured form has: read one, correct it with a reason, mark it in error.

Built by ``add_record_endpoints`` for each form so the rules (site scoping, reason, audit,
signature invalidation, re-validation of the corrected record) are written once.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.database import commit_then_read
from trial.errors import ValidationFailed
from trial.records.schemas import CHANGE_REASON, ReasonSchema
from trial.records.services import (
    correct_record,
    ensure_correctable,
    get_visible_record,
    mark_entered_in_error,
)

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
READERS = (*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)

# Called after any change to a record, e.g. to invalidate the signature of its visit.
after_change_hooks: list[Callable] = []


def _after_change(actor, record) -> None:
    for hook in after_change_hooks:
        hook(actor, record)


def add_record_endpoints(
    blp: Blueprint,
    *,
    model,
    path: str,
    dump_schema,
    patch_schema,
    revalidate: Callable,
    patch_keys: dict[str, str] | None = None,
) -> None:
    """GET /{path}/{id}, PATCH /{path}/{id} and POST /{path}/{id}/entered-in-error.

    ``revalidate(record, participant, merged_values)`` checks the record as it would be
    after the change and raises ValidationFailed naming each bad field. ``patch_keys`` are
    the PATCH body keys of fields renamed there (see ``patch_schema_for``); errors name them.
    """
    entity = model.ENTITY

    @blp.route(f"/{path}/<int:record_id>", methods=["GET"], endpoint=f"get_{entity}")
    @allow(*READERS)
    @blp.response(200, dump_schema)
    def get_record(record_id):
        return get_visible_record(g.current_user, entity, record_id)[0]

    get_record.__doc__ = f"Show one {entity.replace('_', ' ')} record (404 at another site)."

    @blp.route(f"/{path}/<int:record_id>", methods=["PATCH"], endpoint=f"correct_{entity}")
    @allow(*SITE_STAFF)
    @blp.arguments(patch_schema)
    @blp.response(200, dump_schema)
    def correct(body, record_id):
        record, participant = get_visible_record(g.current_user, entity, record_id)
        ensure_correctable(record)
        reason = body.pop(CHANGE_REASON)
        merged = {field: getattr(record, field) for field in model.AUDITED_FIELDS}
        merged.update(body)
        try:
            revalidate(record, participant, merged)
        except ValidationFailed as error:
            keys = patch_keys or {}
            error.errors = {keys.get(k, k): messages for k, messages in error.errors.items()}
            raise
        if correct_record(g.current_user, record, participant, body, reason):
            _after_change(g.current_user, record)
        commit_then_read()
        return record

    correct.__doc__ = (
        f"Correct a {entity.replace('_', ' ')} record; a reason is required "
        f"and every changed field is audited with old and new value."
    )

    @blp.route(
        f"/{path}/<int:record_id>/entered-in-error",
        methods=["POST"],
        endpoint=f"mark_{entity}_in_error",
    )
    @allow(*SITE_STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, dump_schema)
    def mark_in_error(body, record_id):
        record, participant = get_visible_record(g.current_user, entity, record_id)
        mark_entered_in_error(g.current_user, record, participant, body["reason"])
        _after_change(g.current_user, record)
        commit_then_read()
        return record

    mark_in_error.__doc__ = (
        f"Mark a {entity.replace('_', ' ')} record as entered in error "
        f"(it is kept, audited, and leaves every output)."
    )
