"""Download artefacts: for now the randomization key (unblinded statistician)."""

from flask import Response, g
from flask_smorest import Blueprint

from exports.key import build_key_csv
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import writes_on_read
from trial.extensions import db

blp = Blueprint("exports", __name__, url_prefix="/api/v1", description="Exports")

CSV_RESPONSE = {
    "200": {"description": "CSV file", "content": {"text/csv": {"schema": {"type": "string"}}}}
}


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
