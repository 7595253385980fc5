"""The data-query pages: the queries of your sites by age and site, one query with its
thread, answered by site staff, closed or re-opened by monitors and data managers, and a
query raised from the page where a value is shown.

Each form is loaded with the API's schema (``QueryRaiseSchema``, ``QueryAnswerSchema``,
``QueryCloseSchema``, ``QueryReopenSchema``) and given to the same service as POST
/api/v1/queries, /queries/{id}/answer, /close and /reopen, so it is refused and audited
alike; each page keeps its API operation's roles.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.errors import Conflict, NotFound, TrialError, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.queries import services
from trial.queries.models import QUERY_STATUSES
from trial.queries.schemas import (
    QueryAnswerSchema,
    QueryCloseSchema,
    QueryDetailSchema,
    QueryRaiseSchema,
    QueryReopenSchema,
    QuerySchema,
)
from trial.queries.views import OWNERS, READERS, SITE_STAFF
from trial.records.registry import get_visible_record
from trial.web import field_label
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("queries_pages", __name__)

PATH = "/queries/<query_id>"
LABELS = {"text": "Your answer"}
# The close and re-open forms share the query page with each other (and their schemas' one
# field, ``text``): each has an input of its own name, mapped to ``text`` when loaded.
CLOSE_LABELS = {"remark": "Closing remark"}
REOPEN_LABELS = {"reopen_reason": "Why re-open it"}
RAISE_LABELS = {"field": "Field", "text": "Question", "entity": "Record", "record_id": "Record"}


def _central(user) -> bool:
    return user.role in {role.value for role in OWNERS}


@bp.route("/queries", methods=["GET"])
@allow(*READERS)
def queries():
    """The queries of your sites, oldest first: open ones unless another status is asked;
    for monitors and data managers, a site filter and each site's open and answered counts."""
    status = request.args.get("status") or "open"
    if status not in (*QUERY_STATUSES, "any"):
        status = "open"
    summary = services.summarize_open_queries(g.current_user)
    codes = [row["site"] for row in summary]
    site = request.args.get("site") or None
    if site not in codes:
        site = None
    rows = services.visible_queries(
        g.current_user, status=None if status == "any" else status, site=site
    )
    return render_template(
        "queries/list.html",
        title="Data queries",
        queries=QuerySchema(many=True).dump(rows),
        status=status,
        statuses=QUERY_STATUSES,
        site=site,
        codes=codes,
        summary=summary if _central(g.current_user) else None,
    )


def _page(query, status: int, *, form=None, errors=None, failed=None):
    """The query page; ``failed`` names the form ("answer", "close", "reopen") whose input
    ``form`` and ``errors`` are shown again."""
    return render_template(
        "queries/query.html",
        title=f"Query {query.id}",
        query=QueryDetailSchema().dump(query),
        form=form if form is not None else MultiDict(),
        errors=errors or {},
        failed=failed,
        labels={**LABELS, **CLOSE_LABELS, **REOPEN_LABELS},
    ), status


@bp.route(PATH, methods=["GET"])
@allow(*READERS)
def query(query_id):
    """One query: the record and field asked about, the thread, and the forms the role has."""
    return _page(services.get_query(g.current_user, query_id), 200)


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
        errors = form_errors(refused, LABELS)
        return _page(shown, refused.status, form=request.form, errors=errors, failed="answer")
    flash(f"Your answer to query {query_id} is sent; the monitor will review it.", "success")
    return redirect(url_for("queries_pages.query", query_id=query_id))


def _settle(query_id, schema, step, name: str, failed: str, done: str):
    """Load the input ``name`` as the schema's ``text`` and take the step (close, re-open)."""
    try:
        try:
            body = read_form(schema, MultiDict({"text": request.form.get(name, "")}))
        except ValidationFailed as invalid:
            invalid.errors = {name if k == "text" else k: v for k, v in invalid.errors.items()}
            raise
        step(g.current_user, query_id, **body)
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        shown = services.get_query(g.current_user, query_id)
        labels = CLOSE_LABELS if failed == "close" else REOPEN_LABELS
        errors = form_errors(refused, labels)
        return _page(shown, refused.status, form=request.form, errors=errors, failed=failed)
    flash(f"Query {query_id} is {done}.", "success")
    return redirect(url_for("queries_pages.query", query_id=query_id))


@bp.route(f"{PATH}/close", methods=["POST"])
@allow(*OWNERS)
def close_query(query_id):
    """Close an open or answered query, with an optional remark."""
    return _settle(query_id, QueryCloseSchema(), services.close_query, "remark", "close", "closed")


@bp.route(f"{PATH}/reopen", methods=["POST"])
@allow(*OWNERS)
def reopen_query(query_id):
    """Re-open an answered or closed query, saying why."""
    return _settle(
        query_id,
        QueryReopenSchema(),
        services.reopen_query,
        "reopen_reason",
        "reopen",
        "re-opened: it waits for the site's answer",
    )


def _target(entity: str, record_id: str):
    """The record a query is raised on and its participant, as the service finds them (a
    record of another site, or none, is a 404); with each field's value now."""
    if entity == services.PARTICIPANT_ENTITY:
        participant = get_visible_participant(g.current_user, record_id)
        values = {
            "site": participant.site_code,
            "sex": participant.sex,
            "year_of_birth": participant.year_of_birth,
            "consent_date": participant.consent_date,
        }
        return participant, values
    if entity not in services.queryable_entities() or not record_id.isdigit():
        raise NotFound(f"No {entity} {record_id!r}.")
    record, participant = get_visible_record(g.current_user, entity, int(record_id))
    values = {name: getattr(record, name) for name in services.queryable_fields(entity)}
    return participant, values


@bp.route("/queries/raise", methods=["GET", "POST"])
@allow(*OWNERS)
def raise_query():
    """Raise a query on a record's field (or the whole record), from the page showing it."""
    source = request.form if request.method == "POST" else request.args
    entity, record_id = source.get("entity", ""), source.get("record_id", "")
    if not entity.strip() or not record_id.strip():
        return _choose_record(source)
    participant, values = _target(entity, record_id)
    form = request.form if request.method == "POST" else MultiDict(request.args)
    errors: dict = {}
    status = 200
    if request.method == "POST":
        try:
            body = read_form(QueryRaiseSchema(), request.form)
            raised = services.raise_query(g.current_user, **body)
            query_id = raised.id
            db.session.commit()
            flash(f"Query {query_id} is raised; the site will answer it.", "success")
            return redirect(url_for("queries_pages.query", query_id=query_id))
        except TrialError as refused:
            if isinstance(refused, NotFound):
                raise
            db.session.rollback()
            errors, status = form_errors(refused, RAISE_LABELS), refused.status
    fields = [(name, field_label(name)) for name in services.queryable_fields(entity)]
    return render_template(
        "queries/raise.html",
        title="Raise a query",
        participant=participant,
        entity=entity,
        record_id=record_id,
        values=values,
        fields=fields,
        form=form,
        errors=errors,
        labels=RAISE_LABELS,
    ), status


def _choose_record(source):
    """The first step when no record is named: its type and id (a GET form); a form sent
    with either missing names what is (422)."""
    errors: dict = {}
    if any(source.get(name, "").strip() for name in ("entity", "record_id", "text")):
        missing = {
            name: ["Required: fill this in."]
            for name in ("entity", "record_id")
            if not source.get(name, "").strip()
        }
        errors = missing
    return render_template(
        "queries/choose.html",
        title="Raise a query",
        entities=[(name, name.replace("_", " ").capitalize()) for name in
                  services.queryable_entities()],
        form=source,
        errors=errors,
        labels={"entity": "Record type", "record_id": "Record"},
    ), (422 if errors else 200)  # fmt: skip
