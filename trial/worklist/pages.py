"""The site's worklist as the site staff's home page (the same build as GET /api/v1/worklist)."""

from __future__ import annotations

from flask import g, render_template

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.web.blueprint import PageBlueprint
from trial.worklist.schemas import WorklistSchema
from trial.worklist.services import build_worklist

bp = PageBlueprint("worklist_pages", __name__)

# Long lists (a site's visits awaiting signature run to thousands) show their oldest first,
# this many, with the count of the rest.
SHOWN = 25


@bp.route("/worklist", methods=["GET"])
@allow(Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR)
def worklist():
    """What is due at your sites today: visits, missing forms, signatures, queries, SAEs."""
    work = build_worklist(g.current_user)
    lists = [key for key, value in work.items() if isinstance(value, list) and key != "sites"]
    counts = {key: len(work[key]) for key in lists}
    first = WorklistSchema().dump({**work, **{key: work[key][:SHOWN] for key in lists}})
    return render_template(
        "worklist/worklist.html", title="Worklist", work=first, counts=counts, shown=SHOWN
    )
