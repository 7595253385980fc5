"""The DSMB safety reports in the browser: links to the open and closed reports at a data
cut-off, the history of reports generated, and (for the DSMB and the unblinded statistician)
the randomization notices.

Each download is ``GET /api/v1/reports/safety``'s operation: the request is loaded with the
API's schema, the report made, audited and answered by the same functions
(``reports.pdf.produce_safety_report``, ``reports.download.report_response``), so the page's
file is the API's for the same cut-off. The closed report's link is shown only to the roles
the service gives it to (``UNBLINDED_ROLES``); any other role asking for it by address gets
the service's 403. Nothing a blinded role can open here depends on an arm: the open report
is pooled, and the history it sees lists open reports only.
"""

from __future__ import annotations

from datetime import UTC

from flask import g, render_template, request, url_for

from reports.data import resolve_cutoff
from reports.history import report_generations
from reports.options import ARM_MODES
from reports.views import REPORT_READERS, SafetyReportQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import UNBLINDED_ROLES
from trial.database import writes_on_read
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("reports_pages", __name__)

LABELS = {"cutoff": "Data cut-off", "arms": "Arms in the closed report", "session": "Report"}
ARM_NAMES = {"coded": "Coded A, B (the code is held by the unblinded statistician)",
             "named": "Named"}  # fmt: skip
ARM_OPTIONS = [(mode, ARM_NAMES[mode]) for mode in ARM_MODES]


def _iso(instant) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _may_have_closed() -> bool:
    return g.current_user.role in {role.value for role in UNBLINDED_ROLES}


def _reads_notices() -> bool:
    return _may_have_closed()  # GET /api/v1/randomization/notices: the same two roles


def _render(form, errors: dict, status: int, links: dict | None = None):
    from randomization.outputs import list_notices

    closed = _may_have_closed()
    sessions = ("open", "closed") if closed else ("open",)
    page = render_template(
        "reports/reports.html",
        title="DSMB safety reports",
        form=form,
        errors=errors,
        labels=LABELS,
        arm_options=ARM_OPTIONS,
        closed=closed,
        links=links,
        generations=report_generations(sessions),
        notices=list_notices(g.current_user) if _reads_notices() else None,
    )
    return page, status


def _load(args) -> dict:
    """The request loaded as the API loads it, every bad field named at once; the cut-off
    parsed by the reports' own parser (the service parses it again)."""
    errors: dict[str, list[str]] = {}
    try:
        loaded = read_form(SafetyReportQuerySchema(), args)
    except ValidationFailed as refused:
        errors.update(refused.errors)
        loaded = {}
    if "cutoff" not in errors:
        try:
            loaded["cutoff_instant"] = resolve_cutoff(args.get("cutoff") or None)
        except ValidationFailed as refused:
            errors.update(refused.errors)
    if errors:
        raise ValidationFailed(f"Invalid input: {', '.join(sorted(errors))}.", errors)
    return loaded


@bp.route("/reports", methods=["GET"])
@allow(*REPORT_READERS)
def reports():
    """The report links at a cut-off (default: now, to the second), and the history."""
    try:
        loaded = _load(request.args)
    except ValidationFailed as refused:
        return _render(request.args, form_errors(refused, LABELS), 422)
    cutoff = _iso(loaded["cutoff_instant"])
    arms = loaded.get("arms") or "coded"
    links = {"open": url_for("reports_pages.download", session="open", cutoff=cutoff)}
    if _may_have_closed():
        links["closed"] = url_for(
            "reports_pages.download", session="closed", arms=arms, cutoff=cutoff
        )
    return _render({"cutoff": cutoff, "arms": arms}, {}, 200, links)


@bp.route("/reports/download", methods=["GET"])
@allow(*REPORT_READERS)
@writes_on_read
def download():
    """Generate and download a report (as GET /api/v1/reports/safety; audited)."""
    from reports.download import report_response
    from reports.pdf import produce_safety_report  # reportlab: loaded when used

    try:
        args = _load(request.args)
        report = produce_safety_report(
            g.current_user, args["session"], args.get("arms"), args.get("cutoff")
        )
    except ValidationFailed as refused:
        db.session.rollback()
        return _render(request.args, form_errors(refused, LABELS), 422)
    return report_response(report)
