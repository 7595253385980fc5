"""Download artefacts: the blinded dataset bundle and the randomization key."""

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from exports.bundle import EXPORT_ROLES, parse_request
from exports.download import bundle_response, key_response
from exports.schemas import BlindedExportQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import writes_on_read

blp = Blueprint("exports", __name__, url_prefix="/api/v1", description="Exports")

CSV_RESPONSE = {
    "200": {"description": "CSV file", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
ZIP_RESPONSE = {
    "200": {
        "description": "ZIP bundle",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@blp.route("/exports/blinded", methods=["GET"])
@allow(*sorted(EXPORT_ROLES))
@blp.arguments(BlindedExportQuerySchema, location="query", unknown=ma.RAISE)
@blp.doc(responses=ZIP_RESPONSE)
@writes_on_read
def export_blinded(args):
    """Download the blinded dataset bundle for a data cut-off (ZIP; every pull audited).

    The rows are read in one snapshot without holding the write lock; only the audit
    barrier at the start and the audit event at the end write.
    """
    request = parse_request(args.get("cutoff"), args.get("format"), args.get("dummy_arms"))
    return bundle_response(g.current_user, request)


@blp.route("/exports/key", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.doc(responses=CSV_RESPONSE)
@writes_on_read
def export_key():
    """Download participant -> arm as CSV (unblinded statistician; every release audited)."""
    return key_response(g.current_user)
