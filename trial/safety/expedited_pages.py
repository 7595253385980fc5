"""Expedited reports of serious adverse events in the browser: the list with each clock (the
data manager's safety desk, and every reader of ``GET /api/v1/expedited-reports``), the site's
**Submit expedited report** and the safety desk's **Acknowledge receipt**.

Each form calls the API's own service (``submit_expedited_report``,
``acknowledge_expedited_report``), so a page refuses (409: not open, not submitted; 404:
another site's report) and audits exactly as the API does. No report shows an arm.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.safety.expedited import DUE_RULE, expedited_report, expedited_reports
from trial.safety.schemas import ExpeditedReportQuerySchema
from trial.safety.submission import acknowledge_expedited_report, submit_expedited_report
from trial.safety.views import READERS, SITE_STAFF
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("expedited_pages", __name__)

REPORT = "/expedited-reports/<int:report_id>"
LABELS = {"status": "Status", "site": "Site"}
STATUSES = [("open", "Open (not yet sent)"), ("submitted", "Submitted"),
            ("acknowledged", "Acknowledged"), ("withdrawn", "Withdrawn")]  # fmt: skip


@bp.route("/expedited-reports", methods=["GET"])
@allow(*READERS, Role.UNBLINDED_STATISTICIAN, Role.DSMB)
def reports():
    """Expedited reports at your sites, most urgent first, with each clock (filter by status
    and site, as the API's list)."""
    errors: dict = {}
    try:
        args = read_form(ExpeditedReportQuerySchema(), request.args)
    except ValidationFailed as refused:
        errors, args = form_errors(refused, LABELS), {}
    rows = (
        []
        if errors
        else expedited_reports(args.get("status"), actor=g.current_user, site=args.get("site"))
    )
    return render_template(
        "safety/expedited_reports.html",
        title="Expedited reports",
        rows=rows,
        form=request.args,
        errors=errors,
        labels=LABELS,
        statuses=STATUSES,
        due_rule=DUE_RULE,
    ), (422 if errors else 200)


def _back_to(report_id: int):
    """The adverse event's page, where the form was (the list when it came from there)."""
    if request.form.get("from") == "list":
        return redirect(url_for("expedited_pages.reports"))
    report = expedited_report(g.current_user, report_id)
    return redirect(url_for("safety_pages.adverse_event", record_id=report["adverse_event_id"]))


@bp.route(f"{REPORT}/submit", methods=["POST"])
@allow(*SITE_STAFF)
def submit(report_id):
    """Record that your site sent this expedited report (as POST .../submit)."""
    submit_expedited_report(g.current_user, report_id)
    db.session.commit()
    flash(f"Expedited report {report_id} is recorded as submitted.", "success")
    return _back_to(report_id)


@bp.route(f"{REPORT}/acknowledge", methods=["POST"])
@allow(Role.DATA_MANAGER)
def acknowledge(report_id):
    """Record, as the safety desk, that a submitted report was received."""
    acknowledge_expedited_report(g.current_user, report_id)
    db.session.commit()
    flash(f"Receipt of expedited report {report_id} is acknowledged.", "success")
    return _back_to(report_id)
