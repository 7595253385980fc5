"""The blinded bundle in the browser: pull a cut (cut-off, format, dummy-arm seed) and see
the history of pulls with their cut-off and SHA-256.

The form is a GET, as ``GET /api/v1/exports/blinded`` is: its options are loaded with the
API's schema and checked by the API's ``parse_request`` (every bad one named at once, 422,
nothing written), and the file is written, audited and answered by the same function as the
API's (``exports.download.bundle_response``), so the page and the API give the same bytes
for the same cut. The bundle holds no arm; nothing on these pages depends on one.
"""

from __future__ import annotations

from flask import g, render_template, request

from exports import formats
from exports.bundle import EXPORT_ROLES, parse_request
from exports.download import bundle_response
from exports.dummy import MAX_SEED
from exports.history import bundle_pulls
from exports.schemas import BlindedExportQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import writes_on_read
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("exports_pages", __name__)

LABELS = {"cutoff": "Data cut-off", "format": "Format", "dummy_arms": "Dummy-arm seed"}
FORMAT_NAMES = {"csv": "CSV", "xpt": "SAS transport (XPT version 5)", "parquet": "Parquet"}
FORMAT_OPTIONS = [(name, FORMAT_NAMES.get(name, name)) for name in formats.FORMATS]
# Who sees everyone's pulls: the data manager, who reads the audit trail anyway; the others
# see their own.
SEES_ALL_PULLS = {Role.DATA_MANAGER.value}


def _render(form, errors: dict, status: int):
    user = g.current_user
    everyone = user.role in SEES_ALL_PULLS
    pulls = bundle_pulls(None if everyone else user.id)
    page = render_template(
        "exports/bundle.html",
        title="Blinded dataset bundle",
        form=form,
        errors=errors,
        labels=LABELS,
        formats=FORMAT_OPTIONS,
        max_seed=MAX_SEED,
        pulls=pulls,
        everyone=everyone,
    )
    return page, status


@bp.route("/bundle", methods=["GET"])
@allow(*sorted(EXPORT_ROLES))
def bundle():
    """The pull form and the history of pulls."""
    return _render({"format": "csv"}, {}, 200)


@bp.route("/bundle/download", methods=["GET"])
@allow(*sorted(EXPORT_ROLES))
@writes_on_read
def download():
    """Pull the bundle (as GET /api/v1/exports/blinded: the same service, file and audit)."""
    try:
        args = read_form(BlindedExportQuerySchema(), request.args)
        export = parse_request(args.get("cutoff"), args.get("format"), args.get("dummy_arms"))
    except ValidationFailed as refused:
        db.session.rollback()
        return _render(request.args, form_errors(refused, LABELS), 422)
    return bundle_response(g.current_user, export)
