"""Data queries over HTTP: monitors and data managers ask and settle, site staff answer.

Blinded-only roles (statisticians, the DSMB, admins) have no business with clinical data
queries and get a 403; everyone else sees only the queries of their own sites, and another
site's query or record is a 404.
"""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.queries import services
from trial.queries.schemas import (
    QueryAnswerSchema,
    QueryCloseSchema,
    QueryDetailSchema,
    QueryListArgsSchema,
    QueryRaiseSchema,
    QueryReopenSchema,
    QuerySchema,
    SiteQuerySummarySchema,
)

blp = Blueprint("queries", __name__, url_prefix="/api/v1", description="Data queries")

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
OWNERS = (Role.MONITOR, Role.DATA_MANAGER)
READERS = (*SITE_STAFF, *OWNERS)


@blp.route("/queries", methods=["POST"])
@allow(*OWNERS)
@blp.arguments(QueryRaiseSchema)
@blp.response(201, QueryDetailSchema)
def raise_query(body):
    """Raise a query on a record you can see, optionally on one of its fields."""
    query = services.raise_query(g.current_user, **body)
    db.session.commit()
    return query


@blp.route("/queries", methods=["GET"])
@allow(*READERS)
@blp.arguments(QueryListArgsSchema, location="query")
@blp.response(200, QuerySchema(many=True))
def list_queries(args):
    """List the queries of your sites, oldest first, with their age in days."""
    return services.visible_queries(g.current_user, **args)


@blp.route("/queries/summary", methods=["GET"])
@allow(*READERS)
@blp.response(200, SiteQuerySummarySchema(many=True))
def summarize_queries():
    """Count open queries per site you can see, with the age of the oldest."""
    return services.summarize_open_queries(g.current_user)


@blp.route("/queries/<query_id>", methods=["GET"])
@allow(*READERS)
@blp.response(200, QueryDetailSchema)
def get_query(query_id):
    """Show one query with its thread; another site's query is a 404."""
    return services.get_query(g.current_user, query_id)


@blp.route("/queries/<query_id>/answer", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(QueryAnswerSchema)
@blp.response(200, QueryDetailSchema)
def answer_query(body, query_id):
    """Answer an open query of your site; it waits for the monitor to close or re-open it."""
    query = services.answer_query(g.current_user, query_id, **body)
    db.session.commit()
    return query


@blp.route("/queries/<query_id>/close", methods=["POST"])
@allow(*OWNERS)
@blp.arguments(QueryCloseSchema, required=False)
@blp.response(200, QueryDetailSchema)
def close_query(body, query_id):
    """Close an open or answered query, with an optional remark."""
    query = services.close_query(g.current_user, query_id, **body)
    db.session.commit()
    return query


@blp.route("/queries/<query_id>/reopen", methods=["POST"])
@allow(*OWNERS)
@blp.arguments(QueryReopenSchema)
@blp.response(200, QueryDetailSchema)
def reopen_query(body, query_id):
    """Re-open an answered or closed query, saying why."""
    query = services.reopen_query(g.current_user, query_id, **body)
    db.session.commit()
    return query
