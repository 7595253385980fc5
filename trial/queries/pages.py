"""The data-query pages: the open queries of your sites, and one query with its thread,
answered by site staff.

The answer is loaded with the API's ``QueryAnswerSchema`` and given to the same service as
POST /api/v1/queries/{id}/answer, so it is refused and audited alike; reading and answering
keep the API's roles (two endpoints at one address). Raising, closing and re-opening
(monitors and data managers) stay in the API for now.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.queries import services
from trial.queries.models import QUERY_STATUSES
from trial.queries.schemas import QueryAnswerSchema, QueryDetailSchema, QuerySchema
from trial.queries.views import READERS, SITE_STAFF
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("queries_pages", __name__)

PATH = "/queries/<query_id>"
LABELS = {"text": "Your answer"}


@bp.route("/queries", methods=["GET"])
@allow(*READERS)
def queries():
    """The queries of your sites, oldest first: open ones unless another status is asked."""
    status = request.args.get("status") or "open"
    if status not in (*QUERY_STATUSES, "any"):
        status = "open"
    rows = services.visible_queries(g.current_user, status=None if status == "any" else status)
    return render_template(
        "queries/list.html",
        title="Data queries",
        queries=QuerySchema(many=True).dump(rows),
        status=status,
        statuses=QUERY_STATUSES,
    )


def _page(query, form, errors, status: int):
    return render_template(
        "queries/query.html",
        title=f"Query {query.id}",
        query=QueryDetailSchema().dump(query),
        form=form,
        errors=errors,
        labels=LABELS,
    ), status


@bp.route(PATH, methods=["GET"])
@allow(*READERS)
def query(query_id):
    """One query: the record and field asked about, the thread, and the answer form."""
    return _page(services.get_query(g.current_user, query_id), MultiDict(), {}, 200)


@bp.route(PATH, methods=["POST"], endpoint="answer_query")
@allow(*SITE_STAFF)
def answer_query(query_id):
    """Answer an open query of your site; it then waits for the monitor."""
    try:
        body = read_form(QueryAnswerSchema(), request.form, query_id=query_id)
        services.answer_query(g.current_user, query_id, **body)
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        shown = services.get_query(g.current_user, query_id)
        return _page(shown, request.form, form_errors(refused, LABELS), refused.status)
    flash(f"Your answer to query {query_id} is sent; the monitor will review it.", "success")
    return redirect(url_for("queries_pages.query", query_id=query_id))
