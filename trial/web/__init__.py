"""The pages people use: the shared layout, sign-in, CSRF and the components of every form.

Each feature keeps its own pages beside its JSON API (``trial/<feature>/pages.py`` and
``templates/<feature>/``); this package holds what they share. ``init_web`` registers every
feature's page blueprint, so the access-policy walk over the url_map covers them as it
covers the API.
"""

from __future__ import annotations

import re

from flask import Flask, g, request
from flask_wtf.csrf import CSRFProtect

from trial.web.session import SessionInterface

csrf = CSRFProtect()

# Endpoints of features outside ``trial`` (randomization) that add to a participant's page:
# name -> callable(participant) -> Markup. Registered by those features' ``init_app``.
PARTICIPANT_SECTIONS = "trial_participant_sections"


def register_participant_section(app: Flask, render) -> None:
    """Let a feature built on ``trial`` add a section to the participant's page."""
    app.extensions.setdefault(PARTICIPANT_SECTIONS, []).append(render)


def _protect_page_forms() -> None:
    """Check the CSRF token of every page form (never of the JSON API: see config)."""
    from flask import current_app

    from trial.auth.policy import is_page_endpoint

    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.endpoint:
        if is_page_endpoint(current_app, request.endpoint):
            csrf.protect()


# Each role's links in the header, in order; the first is its home page (``/``). A link is
# shown only when its page is registered (``page_url``), so features add pages on their own.
NAV_LINKS = {
    "coordinator": [
        ("Worklist", "worklist_pages.worklist"),
        ("Participants", "participants_pages.participants"),
        ("Register participant", "participants_pages.register"),
        ("Queries", "queries_pages.queries"),
    ],
    "investigator": [
        ("Worklist", "worklist_pages.worklist"),
        ("Participants", "participants_pages.participants"),
        ("Register participant", "participants_pages.register"),
        ("Queries", "queries_pages.queries"),
        ("Visits to sign", "visits_pages.awaiting_signature"),
    ],
    "monitor": [
        ("Worklist", "worklist_pages.worklist"),
        ("Participants", "participants_pages.participants"),
        ("Queries", "queries_pages.queries"),
        ("Source verification", "verification_pages.progress"),
    ],
    "data_manager": [
        ("Participants", "participants_pages.participants"),
        ("Queries", "queries_pages.queries"),
        ("Coding", "coding_pages.uncoded"),
        ("Expedited reports", "expedited_pages.reports"),
        ("Blinded bundle", "exports_pages.bundle"),
    ],
    "statistician": [
        ("Blinded bundle", "exports_pages.bundle"),
        ("Safety reports", "reports_pages.reports"),
    ],
    "dsmb": [
        ("Safety reports", "reports_pages.reports"),
        ("Expedited reports", "expedited_pages.reports"),
    ],
    "unblinded_statistician": [
        ("Randomization", "unblinded_pages.overview"),
        ("Safety reports", "reports_pages.reports"),
        ("Expedited reports", "expedited_pages.reports"),
        ("Blinded bundle", "exports_pages.bundle"),
    ],
    "admin": [
        ("Accounts", "accounts_pages.users"),
        ("Sites", "sites_pages.sites"),
        ("Audit trail", "audit_pages.audit_trail"),
    ],
}


def nav_links(role: str | None) -> list[tuple[str, str]]:
    """The (label, address) of each page in ``role``'s header that exists in this app."""
    links = ((label, page_url(endpoint)) for label, endpoint in NAV_LINKS.get(role or "", []))
    return [(label, url) for label, url in links if url]


def _page_context() -> dict:
    from trial.auth.roles import Role

    user = g.get("current_user")
    role = user.role if user is not None else None
    return {
        "current_user": user,
        "nav_links": nav_links(role),
        "is_site_staff": role in (Role.COORDINATOR.value, Role.INVESTIGATOR.value),
        "reads_participants": role
        in (Role.COORDINATOR.value, Role.INVESTIGATOR.value, Role.MONITOR.value,
            Role.DATA_MANAGER.value),
        "is_investigator": role == Role.INVESTIGATOR.value,
    }  # fmt: skip


def field_id(name: str) -> str:
    """The HTML id of the input named ``name`` (dots and brackets become hyphens)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(name)).strip("-") or "field"


def field_label(name: str) -> str:
    """A readable name for an input the page gave no label for (``vitals.heart_rate``)."""
    return re.sub(r"[._]+", " ", str(name)).strip().capitalize()


def page_url(endpoint: str, **values) -> str | None:
    """The address of a page, or None when no such page is registered (a link is then not
    shown: features add their pages independently)."""
    from flask import url_for
    from werkzeug.routing import BuildError

    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def init_web(app: Flask, blueprints) -> None:
    """Bind sessions and CSRF to the app and register the page blueprints."""
    from trial.web.pages import bp as web_bp

    app.session_interface = SessionInterface()
    csrf.init_app(app)
    app.before_request(_protect_page_forms)  # registered after the policy: 401 comes first
    app.context_processor(_page_context)
    app.jinja_env.globals["page_url"] = page_url
    app.jinja_env.filters["field_id"] = field_id
    app.jinja_env.filters["field_label"] = field_label
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    for blueprint in (web_bp, *blueprints):
        app.register_blueprint(blueprint)
