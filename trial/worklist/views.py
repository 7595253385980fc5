"""GET /api/v1/worklist: the site's list of things to do, in one call."""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.worklist.schemas import WorklistQuerySchema, WorklistSchema
from trial.worklist.services import build_worklist

blp = Blueprint("worklist", __name__, url_prefix="/api/v1", description="The site's worklist")


@blp.route("/worklist", methods=["GET"])
@allow(Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR)
@blp.arguments(WorklistQuerySchema, location="query")
@blp.response(200, WorklistSchema)
def worklist(query):
    """What is due at the caller's sites (or ``site``): visits due and overdue by window,
    expected forms missing, visits awaiting signature, open queries with their age, and
    serious-AE reports with their clock. ``from``/``to`` narrow the visits to a period."""
    return build_worklist(
        g.current_user, site=query.get("site"), start=query.get("start"), end=query.get("end")
    )
