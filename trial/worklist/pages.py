"""The site's worklist as the site staff's home page (the same build as GET /api/v1/worklist).

Its visit lists are a site's whole history, kept per process for the state of the trial
(``trial.worklist.services.kept_worklist``); their markup is kept beside them, per role
flags the markup shows (site staff's **Record** links, the investigator's **Sign visits**),
so a page opened again while nothing changed renders only its queries and SAE clocks, which
age by the hour.
"""

from __future__ import annotations

from flask import g, render_template, request
from markupsafe import Markup

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.web.blueprint import PageBlueprint
from trial.worklist.kept import kept
from trial.worklist.schemas import WorklistSchema
from trial.worklist.services import kept_worklist

bp = PageBlueprint("worklist_pages", __name__)

# Long lists (a site's visits awaiting signature run to thousands) show their oldest first,
# this many, with the count of the rest.
SHOWN = 25
VISIT_LISTS = ("visits_due", "missing_forms", "awaiting_signature")
LISTS = (*VISIT_LISTS, "open_queries", "serious_adverse_events")
# Marshmallow schemas keep no state between dumps: built once.
_SCHEMA = WorklistSchema()


@bp.route("/worklist", methods=["GET"])
@allow(Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR)
def worklist():
    """What is due at your sites today: visits, missing forms, signatures, queries, SAEs."""
    key, work = kept_worklist(g.current_user)
    counts = {name: len(work[name]) for name in LISTS}
    visit_sections = kept(
        "worklist_html", (key, _markup_flags()), lambda: _visit_sections(work, counts)
    )
    shown = _SCHEMA.dump(
        {name: value[:SHOWN] if isinstance(value, list) else value for name, value in work.items()
         if name not in VISIT_LISTS}
    )  # fmt: skip
    return render_template(
        "worklist/worklist.html",
        title="Worklist",
        work=shown,
        counts=counts,
        shown=SHOWN,
        visit_sections=visit_sections,
    )


def _markup_flags() -> tuple:
    """All the kept markup may show differently to readers of one site: site staff's
    **Record** links, the investigator's **Sign visits**, and the address the pages are
    served under."""
    role = g.current_user.role
    return (
        role in (Role.COORDINATOR.value, Role.INVESTIGATOR.value),
        role == Role.INVESTIGATOR.value,
        request.script_root,
    )


def _visit_sections(work: dict, counts: dict) -> Markup:
    """The visits due, with forms missing and awaiting a signature: the first of each."""
    rows = _SCHEMA.dump({name: work[name][:SHOWN] for name in VISIT_LISTS})
    return Markup(render_template("worklist/_visits.html", work=rows, counts=counts, shown=SHOWN))
