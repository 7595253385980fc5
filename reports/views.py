"""``GET /api/v1/reports/safety``: the DSMB safety report as a PDF.

The open report (the default) is for the DSMB, the unblinded statistician, data managers and
the blinded statistician (the sponsor's side); the closed report for the DSMB and the
unblinded statistician only: any other role gets 403 before anything is read.
"""

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from reports.download import report_response
from reports.options import ARM_MODES, SESSIONS
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import writes_on_read

blp = Blueprint("reports", __name__, url_prefix="/api/v1", description="DSMB safety reports")

PDF_RESPONSE = {
    "200": {
        "description": "PDF file",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class SafetyReportQuerySchema(ma.Schema):
    session = ma.fields.String(
        load_default="open",
        validate=ma.validate.OneOf(SESSIONS),
        metadata={"description": "open (pooled) or closed (by arm; DSMB and unblinded only)"},
    )
    arms = ma.fields.String(
        validate=ma.validate.OneOf(ARM_MODES),
        metadata={"description": "closed report: arms coded A/B (default) or named"},
    )
    cutoff = ma.fields.String(
        validate=ma.validate.Length(max=40),
        metadata={"description": "data cut-off, ISO 8601 with a time zone; default now"},
    )


# Who may have the open report; the closed one is for ``UNBLINDED_ROLES`` only (checked by
# the service). The pages use the same two sets.
REPORT_READERS = (Role.DSMB, Role.UNBLINDED_STATISTICIAN, Role.DATA_MANAGER, Role.STATISTICIAN)


@blp.route("/reports/safety", methods=["GET"])
@allow(*REPORT_READERS)
@blp.arguments(SafetyReportQuerySchema, location="query")
@blp.doc(responses=PDF_RESPONSE)
@writes_on_read
def safety_report(args):
    """Download the open or closed DSMB safety report (every generation audited)."""
    from reports.pdf import produce_safety_report  # reportlab: loaded when used

    report = produce_safety_report(
        g.current_user, args["session"], args.get("arms"), args.get("cutoff")
    )
    return report_response(report)
