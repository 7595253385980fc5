"""Download artefacts: the blinded dataset bundle and the randomization key."""

import os
import tempfile
from pathlib import Path

import marshmallow as ma
from flask import Response, g, send_file
from flask_smorest import Blueprint

from exports.bundle import EXPORT_ROLES, parse_request, write_bundle
from exports.key import build_key_csv
from exports.schemas import BlindedExportQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import writes_on_read
from trial.extensions import db

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
    handle, name = tempfile.mkstemp(suffix=".zip")
    os.close(handle)
    path = Path(name)
    try:
        result = write_bundle(g.current_user, request, path)
        db.session.commit()
        stream = path.open("rb")
    finally:
        path.unlink(missing_ok=True)  # the open handle keeps the bytes until sent
    stamp = result.manifest["cutoff"].replace(":", "").replace("-", "")
    suffix = "-DUMMY-ARMS" if request.dummy_seed is not None else ""
    response = send_file(
        stream,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"blinded-{stamp}-{request.format}{suffix}.zip",
    )
    response.headers["X-Content-SHA256"] = result.sha256
    return response


@blp.route("/exports/key", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.doc(responses=CSV_RESPONSE)
@writes_on_read
def export_key():
    """Download participant -> arm as CSV (unblinded statistician; every release audited)."""
    data, digest = build_key_csv(g.current_user)
    db.session.commit()
    return Response(
        data,
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="randomization-key.csv"',
            "X-Content-SHA256": digest,
        },
    )
