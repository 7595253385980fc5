"""Source data verification pages (monitor): mark a visit verified, and what is left per site.

The mark is loaded with the API's ``VerifySchema`` (the visit's version the monitor read, a
hidden input) and given to the same service as POST /api/v1/visits/{id}/verify, so it is
refused and audited alike. The progress page shows the API's counts
(GET /api/v1/verification) and its list of visits left (GET /api/v1/verification/pending);
data managers read it too, as they read the API's.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import TrialError
from trial.extensions import db
from trial.protocol import current_protocol
from trial.records.registry import get_visible_record
from trial.records.views import requested_version
from trial.verification import services
from trial.verification.schemas import VerifySchema
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("verification_pages", __name__)

PAGE_SIZE = 50


def _visit_label(code: str) -> str:
    try:
        return current_protocol().visit(code).label
    except KeyError:
        return code.replace("_", " ")


@bp.route("/verification", methods=["GET"])
@allow(Role.MONITOR, Role.DATA_MANAGER)
def progress():
    """Per site: completed visits, verified, left to verify; then the visits left, oldest
    first, 50 to a page, each linked to its page."""
    sites = services.verification_progress(g.current_user)
    codes = [row["site"] for row in sites]
    site = request.args.get("site") or None
    if site not in codes:
        site = None
    # The counts above give the number left; only the page shown is read.
    total = sum(row["left_to_verify"] for row in sites if site in (None, row["site"]))
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    rows = services.visits_left_to_verify(
        g.current_user, site, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render_template(
        "verification/progress.html",
        title="Source data verification",
        sites=sites,
        codes=codes,
        site=site,
        rule=services.COUNTING_RULE,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        label=_visit_label,
    )


@bp.route("/visits/<int:visit_id>/verify", methods=["POST"])
@allow(Role.MONITOR)
def verify(visit_id):
    """Mark the visit verified against source, at the version the page showed."""
    # Imported here: the visit page is the visits package's; this form is posted from it.
    from trial.visits.pages import _visit_page

    record, participant = get_visible_record(g.current_user, "visit", visit_id)
    try:
        body = read_form(VerifySchema(), request.form, visit_id=visit_id)
        services.verify_visit(g.current_user, visit_id, expected_version=requested_version(body))
        db.session.commit()
    except TrialError as refused:
        db.session.rollback()
        record, participant = get_visible_record(g.current_user, "visit", visit_id)
        return _visit_page(record, participant, errors=form_errors(refused), status=refused.status)
    flash(f"Visit {visit_id} is marked verified against source.", "success")
    return redirect(url_for("visits_pages.visit", visit_id=visit_id))
