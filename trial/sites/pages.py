"""The sites pages: the trial's sites (every signed-in role, as GET /api/v1/sites) and a new
site (admins, as POST /api/v1/sites).

The new-site form is loaded with the API's ``SiteSchema`` and its rule check and given to the
same service, so the page refuses (every bad field at once, nothing written), conflicts and
audits exactly as the API does.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow, allow_any_user
from trial.auth.roles import Role
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.protocol import current_protocol
from trial.sites import services
from trial.sites.schemas import SiteSchema
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("sites_pages", __name__)

LABELS = {
    "code": "Site code",
    "name": "Site name",
    "timezone": "Time zone",
    "planned_enrollment": "Planned enrollment",
}


@bp.route("/sites", methods=["GET"])
@allow_any_user
def sites():
    """The trial's sites by code, with a link to add one for admins."""
    return render_template(
        "sites/list.html",
        title="Sites",
        sites=SiteSchema(many=True).dump(services.list_sites()),
        is_admin=g.current_user.role == Role.ADMIN.value,
    )


@bp.route("/sites/new", methods=["GET", "POST"])
@allow(Role.ADMIN)
def new_site():
    """Add a site: its code, name, time zone and planned enrollment."""
    errors: dict[str, list[str]] = {}
    status = 200
    form = request.form if request.method == "POST" else MultiDict({"timezone": "UTC"})
    if request.method == "POST":
        try:
            body = read_form(SiteSchema(), request.form)
            site = services.create_site(g.current_user, **body)
            db.session.commit()
        except (ValidationFailed, Conflict) as refused:
            db.session.rollback()
            errors, status = form_errors(refused, LABELS), refused.status
        else:
            flash(f"Site {site.code} ({site.name}) is added.", "success")
            return redirect(url_for("sites_pages.sites"))
    return render_template(
        "sites/new.html",
        title="Add a site",
        form=form,
        errors=errors,
        labels=LABELS,
        planned_default=current_protocol().planned_enrollment_per_site,
    ), status
