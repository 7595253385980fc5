"""The participants' pages: the list, registration, and a participant's own page.

Registration loads the form through the API's ``ParticipantCreateSchema`` and its rule check
and calls the same service, so the page and ``POST /api/v1/participants`` refuse and audit
alike. A participant's page shows what the API shows site staff (the blinded schemas).
"""

from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.participants import services
from trial.participants.models import PARTICIPANT_STATUSES as STATUSES
from trial.participants.overview import kept_records, open_queries
from trial.participants.schemas import ParticipantCreateSchema
from trial.web import PARTICIPANT_SECTIONS
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form
from trial.worklist.kept import kept

bp = PageBlueprint("participants_pages", __name__)

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
SITE_STAFF_ROLES = frozenset(role.value for role in SITE_STAFF)
READERS = (*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)
PAGE_SIZE = 50
LABELS = {
    "site": "Site",
    "sex": "Sex",
    "year_of_birth": "Year of birth",
    "consent_date": "Consent date",
}


@bp.route("/participants", methods=["GET"])
@allow(*READERS)
def participants():
    """Participants of your sites: search by id, filter by status, 50 to a page."""
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    search = (request.args.get("q") or "").strip().upper()
    rows = services.visible_participants(g.current_user, status=status)
    if search:
        rows = [p for p in rows if search in p.participant_id]
    page = max(1, request.args.get("page", 1, type=int) or 1)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return render_template(
        "participants/list.html",
        title="Participants",
        participants=shown,
        total=len(rows),
        page=page,
        pages=pages,
        status=status,
        search=search,
        statuses=STATUSES,
    )


@bp.route("/participants/new", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def register():
    """Register a consented participant at your site."""
    errors: dict[str, list[str]] = {}
    form = request.form if request.method == "POST" else MultiDict(_defaults())
    if request.method == "POST":
        try:
            body = read_form(ParticipantCreateSchema(), request.form)
            participant = services.register_participant(g.current_user, **body)
            db.session.commit()
            flash(f"Participant {participant.participant_id} is registered.", "success")
            return redirect(
                url_for("participants_pages.participant", participant_id=participant.participant_id)
            )
        except ValidationFailed as refused:
            db.session.rollback()
            errors = form_errors(refused, LABELS)
    sites = [(site.code, f"{site.code} – {site.name}") for site in g.current_user.sites]
    return render_template(
        "participants/register.html",
        title="Register a participant",
        form=form,
        errors=errors,
        labels=LABELS,
        sites=sites,
    ), (422 if errors else 200)


def _defaults() -> dict:
    sites = g.current_user.sites
    return {"site": sites[0].code} if len(sites) == 1 else {}


@bp.route("/participants/<participant_id>", methods=["GET"])
@allow(*READERS)
def participant(participant_id):
    """One participant: status, allocation, schedule, records and open queries (the
    records' markup kept with the records, ``kept_records``, per ``_markup_flags``)."""
    person = services.get_visible_participant(g.current_user, participant_id)
    sections = [render(person) for render in current_app.extensions.get(PARTICIPANT_SECTIONS, [])]
    key, records = kept_records(g.current_user, person)
    markup = kept(
        "participant_html",
        (key, _markup_flags()),
        lambda: Markup(
            render_template(
                "participants/_records.html",
                participant_id=person.participant_id,
                overview=records,
            )
        ),
    )
    return render_template(
        "participants/participant.html",
        title=f"Participant {person.participant_id}",
        participant=person,
        records=markup,
        overview={"queries": open_queries(g.current_user, person)},
        sections=sections,
    )


def _markup_flags() -> tuple:
    """All the kept records' markup may show differently to readers: site staff's
    **Record** and **Report an adverse event** links, and the address the pages are served
    under."""
    return (g.current_user.role in SITE_STAFF_ROLES, request.script_root)
