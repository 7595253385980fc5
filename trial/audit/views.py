"""Read the audit trail: trial-wide for admins and data managers, by site for site staff."""

from urllib.parse import urlencode

from flask import g, request

from trial.audit.reading import audit_page
from trial.audit.schemas import AuditEventSchema, AuditQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Audit trail")
NEXT_CURSOR = "X-Next-Cursor"


@blp.route("/audit", methods=["GET"])
@allow(Role.ADMIN, Role.DATA_MANAGER, Role.MONITOR, Role.COORDINATOR, Role.INVESTIGATOR)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(
    200,
    AuditEventSchema(many=True),
    headers={
        NEXT_CURSOR: {
            "description": "The cursor of the next page (absent on the last page): send it "
            "back as ?cursor= with the same filters.",
            "schema": {"type": "string"},
        },
        "Link": {"description": 'The next page\'s URL, rel="next".', "schema": {"type": "string"}},
    },
)
def list_audit_events(args):
    """List audit events, oldest first (``order=chain``) or newest first (``order=newest``).

    Filters combine: ``participant`` (its rows and every record's under it), ``from``/``to``
    (ISO 8601), ``entity_type``, ``entity_id``, ``site``, ``action``, ``username`` (who
    acted). Pages: a full page carries the next page's cursor in ``X-Next-Cursor`` (and
    ``Link``); rows committed while paging never shift a page. Site staff and monitors see
    only events about records of their own sites. The answer stays a list of events, as it
    always was.
    """
    rows, next_cursor = audit_page(g.current_user, args)
    headers = {}
    if next_cursor is not None:
        query = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        query.append(("cursor", next_cursor))
        headers = {
            NEXT_CURSOR: next_cursor,
            "Link": f'<{request.base_url}?{urlencode(query)}>; rel="next"',
        }
    return rows, 200, headers
