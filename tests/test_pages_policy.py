"""The pages' permission matrix: every page route declares its roles (the url_map walk of
tests/test_access_policy.py covers pages too), each has a row here written apart from the
code, and each role signed in through the sign-in page gets exactly what its row says. A page
does what its API operation does, so its roles are that operation's roles.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests import matrix_admin, matrix_monitoring, matrix_outputs
from tests.page_helpers import CSRF, sign_in
from trial.audit.models import AuditEvent
from trial.auth.policy import is_page_endpoint, policy_for
from trial.auth.roles import Role
from trial.extensions import db

ROLES = [role.value for role in Role]
PASSWORD = "a-long-password-1"
SITE_STAFF = {"coordinator", "investigator"}
READERS = SITE_STAFF | {"monitor", "data_manager"}
EVERYONE = set(ROLES)
PUBLIC = None

# (method, rule) -> the roles that get past the policy (None: public).
PAGE_MATRIX = {
    ("GET", "/"): EVERYONE,
    ("GET", "/sign-in"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("GET", "/sign-out"): EVERYONE,
    ("GET", "/password"): EVERYONE,
    ("POST", "/password"): EVERYONE,
    ("GET", "/static/<path:filename>"): PUBLIC,
    ("GET", "/worklist"): SITE_STAFF | {"monitor"},
    ("GET", "/participants"): READERS,
    ("GET", "/participants/new"): SITE_STAFF,
    ("POST", "/participants/new"): SITE_STAFF,
    ("GET", "/participants/<participant_id>"): READERS,
    ("GET", "/participants/<participant_id>/eligibility"): READERS,
    ("POST", "/participants/<participant_id>/eligibility"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/randomize"): SITE_STAFF,
    ("POST", "/participants/<participant_id>/randomize"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/code-break"): {"investigator"},
    ("POST", "/participants/<participant_id>/code-break"): {"investigator"},
    ("GET", "/participants/<participant_id>/visits/new"): SITE_STAFF,
    ("POST", "/participants/<participant_id>/visits/new"): SITE_STAFF,
    ("GET", "/visits/<int:visit_id>"): READERS,
    ("GET", "/visits/<int:visit_id>/correct"): SITE_STAFF,
    ("POST", "/visits/<int:visit_id>/correct"): SITE_STAFF,
    ("GET", "/visits/<int:visit_id>/entered-in-error"): SITE_STAFF,
    ("POST", "/visits/<int:visit_id>/entered-in-error"): SITE_STAFF,
    ("POST", "/visits/<int:visit_id>/sign"): {"investigator"},
    ("GET", "/signatures"): {"investigator"},
    ("GET", "/records/<entity>/<int:record_id>/correct"): SITE_STAFF,
    ("POST", "/records/<entity>/<int:record_id>/correct"): SITE_STAFF,
    ("GET", "/records/<entity>/<int:record_id>/entered-in-error"): SITE_STAFF,
    ("POST", "/records/<entity>/<int:record_id>/entered-in-error"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/dosing"): READERS,
    ("POST", "/participants/<participant_id>/dosing"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/disposition"): READERS,
    ("POST", "/participants/<participant_id>/disposition"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/deviations"): READERS,
    ("POST", "/participants/<participant_id>/deviations"): SITE_STAFF,
    ("GET", "/participants/<participant_id>/adverse-events"): READERS,
    ("GET", "/participants/<participant_id>/adverse-events/new"): SITE_STAFF,
    ("POST", "/participants/<participant_id>/adverse-events/new"): SITE_STAFF,
    ("GET", "/adverse-events/<int:record_id>"): READERS,
    ("GET", "/adverse-events/<int:record_id>/correct"): SITE_STAFF,
    ("POST", "/adverse-events/<int:record_id>/correct"): SITE_STAFF,
    ("GET", "/adverse-events/<int:record_id>/entered-in-error"): SITE_STAFF,
    ("POST", "/adverse-events/<int:record_id>/entered-in-error"): SITE_STAFF,
    ("GET", "/meddra/suggestions"): SITE_STAFF,
    ("GET", "/queries"): READERS,
    ("GET", "/queries/<query_id>"): READERS,
    ("POST", "/queries/<query_id>"): SITE_STAFF,
}
# The central roles' pages keep their rows beside their tests; this is still one table.
CENTRAL_MATRICES = (matrix_monitoring, matrix_outputs, matrix_admin)
for _matrix in CENTRAL_MATRICES:
    PAGE_MATRIX.update(_matrix.ROWS)

ARGUMENTS = {
    "participant_id": "S01-0001",
    "visit_id": "1",
    "record_id": "1",
    "entity": "dosing",
    "query_id": "1",
    "path:filename": "site.css",
}
for _matrix in CENTRAL_MATRICES:
    ARGUMENTS.update(_matrix.ARGUMENTS)


def page_routes(app) -> dict[tuple[str, str], str]:
    return {
        (method, rule.rule): rule.endpoint
        for rule in app.url_map.iter_rules()
        if is_page_endpoint(app, rule.endpoint)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def concrete(rule: str) -> str:
    return re.sub(r"<([^>]+)>", lambda m: ARGUMENTS[m.group(1).split(":")[-1]]
                  if m.group(1) != "path:filename" else "site.css", rule)  # fmt: skip


def test_every_page_route_has_a_row_and_its_declared_roles(app):
    served = page_routes(app)
    assert set(served) == set(PAGE_MATRIX), (
        f"missing rows: {sorted(set(served) - set(PAGE_MATRIX))}; "
        f"stale rows: {sorted(set(PAGE_MATRIX) - set(served))}"
    )
    for key, endpoint in served.items():
        policy = policy_for(app, endpoint)
        assert policy is not None, key
        if PAGE_MATRIX[key] is PUBLIC:
            assert policy.public, key
        else:
            assert not policy.public and set(policy.roles) == PAGE_MATRIX[key], key


@pytest.fixture
def signed_in(app, make_user, make_participant, make_site):
    """A test client per role, signed in through the sign-in page (site roles at S01)."""
    make_site("S02")
    assert make_participant(site="S01")["participant_id"] == "S01-0001"
    clients = {}
    for role in ROLES:
        make_user(role, username=f"page.{role}", password=PASSWORD)
        client = app.test_client()
        sign_in(client, f"page.{role}", PASSWORD)
        token = CSRF.search(client.get("/password").text).group(1)
        clients[role] = (client, token)
    return clients


def audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.mark.parametrize("route", list(PAGE_MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_page_permission_matrix(signed_in, route):
    method, rule = route
    allowed = PAGE_MATRIX[route]
    url = concrete(rule)
    actual, expected = {}, {}
    for role in ROLES:
        client, token = signed_in[role]
        before = audit_count()
        # An empty form: an allowed role gets its page or its form's errors, never a 403.
        data = {"csrf_token": token} if method == "POST" else None
        response = client.open(url, method=method, data=data)
        assert response.status_code < 500, (role, url, response.text[:500])
        refused = response.status_code == 403
        actual[role] = "refused" if refused else "allowed"
        expected[role] = "allowed" if allowed is PUBLIC or role in allowed else "refused"
        if refused:
            assert "You cannot open this page" in response.text
            assert f"The {role} role may not open this page." in response.text
            assert audit_count() == before, (role, url)
        if rule == "/sign-out" and not refused:  # sign back in for the next routes
            sign_in(client, f"page.{role}", PASSWORD)
            signed_in[role] = (client, CSRF.search(client.get("/password").text).group(1))
    assert actual == expected


def test_control_a_page_declared_for_one_role_refuses_the_others(app, signed_in):
    """The matrix would catch a page whose roles were widened: here one is, in the test."""
    view = app.view_functions["participants_pages.register"]
    original = view.access_policy
    try:
        view.access_policy = type(original)(public=False, roles=frozenset(ROLES))
        client, _ = signed_in["statistician"]
        assert client.get("/participants/new").status_code == 200
    finally:
        view.access_policy = original
    assert signed_in["statistician"][0].get("/participants/new").status_code == 403
