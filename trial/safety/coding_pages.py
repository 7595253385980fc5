"""The data manager's coding pages: uncoded verbatim terms, coded with the dictionary search.

The list is the API's (GET /api/v1/adverse-events/uncoded); the search is GET
/api/v1/meddra/terms's (``search_terms``, its query loaded with ``TermSearchQuerySchema``),
as a plain GET form that lists matching preferred terms, so it works without JavaScript; the
coding is loaded with ``CodingSchema`` and given to the service of POST
/api/v1/adverse-events/{id}/coding, so a first coding and a recoding need a reason and are
refused and audited alike.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import Conflict, TrialError, ValidationFailed
from trial.extensions import db
from trial.records.views import requested_version
from trial.safety import services
from trial.safety.coding import code_adverse_event
from trial.safety.schemas import CodingSchema, TermSearchQuerySchema
from trial.safety.search import search_terms
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("coding_pages", __name__)

LABELS = {"preferred_term": "Preferred term", "reason": "Reason", "q": "Search the dictionary"}
RESULTS = 20


@bp.route("/coding", methods=["GET"])
@allow(Role.DATA_MANAGER)
def uncoded():
    """Adverse events whose verbatim term no dictionary codes, oldest first; and a way to
    open any adverse event to recode it."""
    wanted = (request.args.get("adverse_event") or "").strip()
    errors: dict = {}
    if wanted:
        if wanted.isdigit() and len(wanted) <= 10:
            return redirect(url_for("coding_pages.code", record_id=int(wanted)))
        errors = {"adverse_event": ["Enter the adverse event's number, for example 42."]}
    rows = services.present(services.uncoded_adverse_events(g.current_user))
    return render_template(
        "coding/uncoded.html",
        title="Coding",
        rows=rows,
        form=MultiDict({"adverse_event": wanted}),
        errors=errors,
        labels={"adverse_event": "Adverse event number"},
    ), (422 if errors else 200)


def _search(form) -> tuple[list[dict], dict]:
    """Matching preferred terms for the search box ``q`` (none when it is empty)."""
    if not (form.get("q") or "").strip():
        return [], {}
    try:
        args = read_form(TermSearchQuerySchema(), MultiDict({"q": form.get("q", "")}))
    except ValidationFailed as refused:
        return [], form_errors(refused, LABELS)
    return search_terms(args["q"], RESULTS), {}


def _page(record_id, form, errors, status):
    record, participant = services.get_adverse_event(g.current_user, record_id)
    matches, search_errors = _search(form)
    return render_template(
        "coding/code.html",
        title=f"Code adverse event {record_id}",
        event=services.present_one(record, participant),
        participant=participant,
        matches=matches,
        form=form,
        errors={**search_errors, **errors},
        labels=LABELS,
    ), (422 if search_errors and status == 200 else status)


@bp.route("/coding/<int:record_id>", methods=["GET"])
@allow(Role.DATA_MANAGER)
def code(record_id):
    """One adverse event's verbatim term and coding, the dictionary search, and the coding
    form (a chosen search result fills the preferred term)."""
    form = MultiDict(request.args)
    if "term" in form and "preferred_term" not in form:
        form["preferred_term"] = form["term"]
    return _page(record_id, form, {}, 200)


@bp.route("/coding/<int:record_id>", methods=["POST"])
@allow(Role.DATA_MANAGER)
def save_coding(record_id):
    """Code or recode the term to a preferred term of the loaded dictionary, with a reason."""
    try:
        body = read_form(CodingSchema(), request.form, record_id=record_id)
        expected = requested_version(body)
        record, _participant = code_adverse_event(
            g.current_user, record_id, body["preferred_term"], body["reason"],
            expected_version=expected,
        )  # fmt: skip
        shown = f"{record.preferred_term} ({record.system_organ_class})"
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        return _page(record_id, request.form, form_errors(refused, LABELS), refused.status)
    except TrialError as refused:
        db.session.rollback()
        if refused.status == 404:
            raise
        return _page(record_id, request.form, form_errors(refused, LABELS), refused.status)
    flash(f"Adverse event {record_id} is coded to {shown}.", "success")
    return redirect(url_for("coding_pages.uncoded"))
