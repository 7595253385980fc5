"""Deny by default: every route declares who may call it, and each role gets exactly that.

Three layers: a walk of ``app.url_map`` that fails on any endpoint without a declared policy
(with a negative control proving the walk and the runtime guard both catch one); a check that
every route has a row in the permission matrix below, so a new route cannot ship untested; and
the matrix itself, sent over HTTP for every role.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.auth.policy import allow, is_page_endpoint, policy_for
from trial.auth.roles import Role
from trial.extensions import db

ROLES = [role.value for role in Role]
assert ROLES == [
    "admin",
    "coordinator",
    "investigator",
    "monitor",
    "data_manager",
    "statistician",
    "unblinded_statistician",
    "dsmb",
]

SITE_STAFF = {"coordinator", "investigator"}
PARTICIPANT_READERS = SITE_STAFF | {"monitor", "data_manager"}
QUERY_OWNERS = {"monitor", "data_manager"}
EVERYONE = set(ROLES)

PUBLIC_ROUTES = {
    ("GET", "/api/v1/health"): 200,
    ("GET", "/api/v1/openapi.json"): 200,
    ("POST", "/api/v1/auth/token"): 422,  # login: public, but an empty body is invalid
}

PARTICIPANT_ID = "S01-0001"
TARGET_USER = "target.user"


def _participant_body(role):
    return {"site": "S01", "sex": "M", "year_of_birth": 1975, "consent_date": "2026-01-10"}


# (method, url rule) -> (roles allowed, status for an allowed role, request body for a role).
# A status of None means "anything but 401, 403 or a 5xx": the route belongs to a feature with
# its own tests, and here only who gets past the policy matters.
MATRIX = {
    # participants
    ("GET", "/api/v1/participants"): (PARTICIPANT_READERS, 200, None),
    ("POST", "/api/v1/participants"): (SITE_STAFF, 201, _participant_body),
    ("GET", "/api/v1/participants/<participant_id>"): (PARTICIPANT_READERS, 200, None),
    # audit trail
    ("GET", "/api/v1/audit"): (
        {"admin", "data_manager", "monitor", "coordinator", "investigator"},
        200,
        None,
    ),
    # accounts
    ("GET", "/api/v1/users"): ({"admin"}, 200, None),
    ("POST", "/api/v1/users"): (
        {"admin"},
        201,
        lambda role: {"username": f"made.by.{role}", "role": "statistician"},
    ),
    ("PATCH", "/api/v1/users/<username>"): (
        {"admin"},
        200,
        lambda role: {"role": "data_manager", "sites": [], "reason": f"matrix {role}"},
    ),
    # account administration (the target user is an active statistician)
    ("POST", "/api/v1/users/<username>/deactivate"): (
        {"admin"},
        200,
        lambda role: {"reason": f"matrix {role}"},
    ),
    ("POST", "/api/v1/users/<username>/reactivate"): (
        {"admin"},
        409,  # the target is active: past the policy, refused by the service
        lambda role: {"reason": f"matrix {role}"},
    ),
    ("POST", "/api/v1/users/<username>/reset-password"): (
        {"admin"},
        200,
        lambda role: {"reason": f"matrix {role}"},
    ),
    ("GET", "/api/v1/auth/me"): (EVERYONE, 200, None),
    # a body without the new password: validation (422), past the policy
    ("POST", "/api/v1/auth/password"): (EVERYONE, 422, lambda role: {"current_password": "x"}),
    # code-break approvals: given and revoked by the unblinded statistician only
    ("GET", "/api/v1/users/<username>/code-break-approval"): (
        {"admin", "unblinded_statistician"},
        200,
        None,
    ),
    ("POST", "/api/v1/users/<username>/code-break-approval"): (
        {"unblinded_statistician"},
        422,  # no password in the body: validation, not the step-up's 403
        lambda role: {"reason": f"matrix {role}"},
    ),
    ("DELETE", "/api/v1/users/<username>/code-break-approval"): (
        {"unblinded_statistician"},
        None,
        lambda role: {"reason": f"matrix {role}"},
    ),
    ("DELETE", "/api/v1/auth/token"): (EVERYONE, 204, None),
    # sites
    ("GET", "/api/v1/sites"): (EVERYONE, 200, None),
    ("POST", "/api/v1/sites"): (
        {"admin"},
        201,
        lambda role: {"code": f"N{ROLES.index(role)}", "name": f"By {role}"},
    ),
    # randomization (blinded reads for site staff and readers; arms for the unblinded only)
    ("POST", "/api/v1/participants/<participant_id>/randomize"): (
        SITE_STAFF,
        None,
        lambda role: {"eligibility_confirmed": True},
    ),
    ("GET", "/api/v1/participants/<participant_id>/randomization"): (
        PARTICIPANT_READERS,
        None,
        None,
    ),
    # The body lacks the password, so the investigator is stopped by validation (422), not by
    # the service's own 403 for a wrong password.
    ("POST", "/api/v1/participants/<participant_id>/code-break"): (
        {"investigator"},
        422,
        lambda role: {"reason": "emergency"},
    ),
    ("GET", "/api/v1/randomization/list"): ({"unblinded_statistician"}, None, None),
    ("GET", "/api/v1/randomization/summary"): ({"unblinded_statistician"}, None, None),
    ("GET", "/api/v1/randomization/notices"): ({"unblinded_statistician", "dsmb"}, None, None),
    # exports
    ("GET", "/api/v1/exports/key"): ({"unblinded_statistician"}, None, None),
    ("GET", "/api/v1/exports/blinded"): (
        {"statistician", "unblinded_statistician", "data_manager"},
        200,
        None,
    ),
    # DSMB safety reports: the open report (the default) for these four; the closed one
    # for the DSMB and the unblinded statistician only (tests/test_reports_access.py)
    ("GET", "/api/v1/reports/safety"): (
        {"dsmb", "unblinded_statistician", "data_manager", "statistician"},
        200,
        None,
    ),
    # visit capture: reads for site staff, monitors and data managers; writes for site staff
    ("GET", "/api/v1/participants/<participant_id>/schedule"): (PARTICIPANT_READERS, None, None),
    ("GET", "/api/v1/participants/<participant_id>/drinking"): (PARTICIPANT_READERS, None, None),
    ("POST", "/api/v1/visits/<int:visit_id>/sign"): ({"investigator"}, None, None),
    ("GET", "/api/v1/visits/<int:visit_id>"): (PARTICIPANT_READERS, None, None),
    ("PATCH", "/api/v1/visits/<int:visit_id>"): (SITE_STAFF, None, None),
    ("POST", "/api/v1/visits/<int:visit_id>/entered-in-error"): (SITE_STAFF, None, None),
    **{
        (method, f"/api/v1/participants/<participant_id>/{form}"): (
            SITE_STAFF if method == "POST" else PARTICIPANT_READERS,
            None,
            None,
        )
        for form in ("visits", "dosing", "disposition", "deviations", "eligibility")
        for method in ("POST", "GET")
    },
    # the site's worklist: site staff and their monitors
    ("GET", "/api/v1/worklist"): (SITE_STAFF | {"monitor"}, 200, None),
    **{
        route: roles
        for path in (
            "drinking-days",
            "ocds",
            "ciwa",
            "vitals",
            "labs",
            "blinding-assessments",
            "dosing",
            "dispositions",
            "deviations",
            "eligibility-answers",
        )
        for route, roles in (
            (("GET", f"/api/v1/{path}/<int:record_id>"), (PARTICIPANT_READERS, None, None)),
            (("PATCH", f"/api/v1/{path}/<int:record_id>"), (SITE_STAFF, None, None)),
            (
                ("POST", f"/api/v1/{path}/<int:record_id>/entered-in-error"),
                (SITE_STAFF, None, None),
            ),
        )
    },
    # data queries: monitors and data managers raise, close and re-open; site staff answer
    ("POST", "/api/v1/queries"): (QUERY_OWNERS, None, None),
    ("GET", "/api/v1/queries"): (PARTICIPANT_READERS, 200, None),
    ("GET", "/api/v1/queries/summary"): (PARTICIPANT_READERS, 200, None),
    ("GET", "/api/v1/queries/<query_id>"): (PARTICIPANT_READERS, None, None),
    ("POST", "/api/v1/queries/<query_id>/answer"): (SITE_STAFF, None, None),
    ("POST", "/api/v1/queries/<query_id>/close"): (QUERY_OWNERS, None, None),
    ("POST", "/api/v1/queries/<query_id>/reopen"): (QUERY_OWNERS, None, None),
    # source data verification: monitors mark; monitors and data managers read the progress
    ("POST", "/api/v1/visits/<int:visit_id>/verify"): ({"monitor"}, None, None),
    ("GET", "/api/v1/visits/<int:visit_id>/verifications"): (PARTICIPANT_READERS, None, None),
    ("GET", "/api/v1/verification"): (QUERY_OWNERS, 200, None),
    ("GET", "/api/v1/verification/pending"): (QUERY_OWNERS, 200, None),
    # adverse events: site staff report and correct, readers read
    ("POST", "/api/v1/participants/<participant_id>/adverse-events"): (
        SITE_STAFF,
        201,
        lambda role: {
            "term": f"headache ({role})",
            "onset_date": "2026-01-20",
            "grade": 1,
            "serious": False,
            "relatedness": "unlikely",
            "action_taken": "none",
            "outcome": "recovering",
        },
    ),
    ("GET", "/api/v1/participants/<participant_id>/adverse-events"): (
        PARTICIPANT_READERS,
        200,
        None,
    ),
    ("GET", "/api/v1/adverse-events/uncoded"): (PARTICIPANT_READERS, 200, None),
    ("GET", "/api/v1/adverse-events/<int:record_id>"): (PARTICIPANT_READERS, None, None),
    ("PATCH", "/api/v1/adverse-events/<int:record_id>"): (SITE_STAFF, None, None),
    ("POST", "/api/v1/adverse-events/<int:record_id>/entered-in-error"): (SITE_STAFF, None, None),
    # coding: data managers code terms; readers of AEs search the dictionary. Expedited
    # reports: readers (site staff their site's) and the unblinded statistician and DSMB read,
    # site staff submit, the data manager (the safety desk) acknowledges
    ("POST", "/api/v1/adverse-events/<int:record_id>/coding"): ({"data_manager"}, None, None),
    ("GET", "/api/v1/meddra/terms"): (PARTICIPANT_READERS, None, None),
    ("GET", "/api/v1/expedited-reports"): (
        PARTICIPANT_READERS | {"unblinded_statistician", "dsmb"},
        200,
        None,
    ),
    ("POST", "/api/v1/expedited-reports/<int:record_id>/submit"): (SITE_STAFF, None, None),
    ("POST", "/api/v1/expedited-reports/<int:record_id>/acknowledge"): (
        {"data_manager"},
        None,
        None,
    ),
}

# Roles that must never reach a route that can release an arm, whatever the matrix says.
BLINDED_ROLES = EVERYONE - {"unblinded_statistician", "dsmb"}
ARM_RELEASING_ROUTES = [
    ("GET", "/api/v1/randomization/list"),
    ("GET", "/api/v1/randomization/summary"),
    ("GET", "/api/v1/exports/key"),
]

# Record ids that need not exist: an allowed role then gets a 404, never a 401 or 403.
URL_ARGUMENTS = {
    "participant_id": PARTICIPANT_ID,
    "username": TARGET_USER,
    "record_id": "1",
    "visit_id": "1",
    "query_id": "1",
}


def concrete(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: URL_ARGUMENTS[m.group(1)], rule)


def routes(app) -> dict[tuple[str, str], str]:
    """Every (method, rule) of the API, with its endpoint; HEAD/OPTIONS are implied. The
    pages (session sign-in) have their own matrix: ``tests/test_pages_policy.py``."""
    return {
        (method, rule.rule): rule.endpoint
        for rule in app.url_map.iter_rules()
        if not is_page_endpoint(app, rule.endpoint)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def endpoints_without_policy(app) -> list[str]:
    return sorted(
        {
            rule.endpoint
            for rule in app.url_map.iter_rules()
            if policy_for(app, rule.endpoint) is None
        }
    )


def audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


# --- (a) the walk -------------------------------------------------------------------------


def test_every_route_declares_an_access_policy(app):
    rules = list(app.url_map.iter_rules())
    with_policy = [r for r in rules if policy_for(app, r.endpoint) is not None]
    print(f"\n{len(rules)} routes, {len(with_policy)} with a declared access policy")
    assert endpoints_without_policy(app) == []
    assert len(with_policy) == len(rules)
    api_rules = [r for r in rules if not is_page_endpoint(app, r.endpoint)]
    assert len(api_rules) == len(set(routes(app).values())) == len(MATRIX) + len(PUBLIC_ROUTES)


def test_every_route_has_a_row_in_the_permission_matrix(app):
    served = set(routes(app))
    missing = served - set(MATRIX) - set(PUBLIC_ROUTES)
    stale = (set(MATRIX) | set(PUBLIC_ROUTES)) - served
    assert not missing, f"add these routes to the permission matrix: {sorted(missing)}"
    assert not stale, f"the matrix names routes the app no longer serves: {sorted(stale)}"


def test_declared_policies_match_the_matrix(app):
    served = routes(app)
    for key, endpoint in served.items():
        policy = policy_for(app, endpoint)
        if key in PUBLIC_ROUTES:
            assert policy.public, key
        else:
            assert not policy.public, key
            assert set(policy.roles) == MATRIX[key][0], key


# --- (b) negative control -----------------------------------------------------------------


def test_a_route_without_a_policy_is_flagged_and_closed(app, client, make_user):
    ran = []

    def forgotten():
        ran.append(True)
        return {"secret": "arm A"}

    def declared():
        ran.append(True)
        return {"ok": True}

    app.add_url_rule("/api/v1/forgotten", "forgotten", forgotten, methods=["GET", "POST"])
    app.add_url_rule("/api/v1/declared", "declared", allow(Role.ADMIN)(declared))

    assert endpoints_without_policy(app) == ["forgotten"]

    _, admin = make_user("admin")
    _, coordinator = make_user("coordinator")
    for headers in ({}, bearer(admin), bearer(coordinator)):
        for method in ("GET", "POST"):
            response = client.open("/api/v1/forgotten", method=method, headers=headers)
            assert response.status_code == 403, (method, headers)
            assert response.json["code"] == "forbidden"
            assert "secret" not in response.get_data(as_text=True)
    assert ran == []

    # Control for the control: a declared route runs for its role only.
    assert client.get("/api/v1/declared").status_code == 401
    assert client.get("/api/v1/declared", headers=bearer(coordinator)).status_code == 403
    assert ran == []
    assert client.get("/api/v1/declared", headers=bearer(admin)).status_code == 200
    assert ran == [True]


# --- (c) the permission matrix ------------------------------------------------------------


@pytest.fixture
def tokens(make_user, make_participant, make_site):
    """One user of every role (site roles at S01), a participant at S01 and a target user."""
    make_site("S02")
    participant = make_participant(site="S01")
    assert participant["participant_id"] == PARTICIPANT_ID
    make_user("statistician", username=TARGET_USER)
    return {role: make_user(role)[1] for role in ROLES}


@pytest.mark.parametrize("route", list(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_permission_matrix(client, tokens, route):
    method, rule = route
    allowed, success, body_for = MATRIX[route]
    url = concrete(rule)
    expected = {
        role: ("allowed" if success is None else success) if role in allowed else 403
        for role in ROLES
    }
    actual = {}
    for role in ROLES:
        before = audit_count()
        response = client.open(
            url,
            method=method,
            headers=bearer(tokens[role]),
            json=body_for(role) if body_for else None,
        )
        status = response.status_code
        assert status < 500, (role, response.json)
        if success is None and role in allowed and status not in (401, 403):
            status = "allowed"
        actual[role] = status
        if response.status_code == 403:
            # Refused by the policy itself, and nothing changed, not even the audit trail.
            assert response.json == {
                "code": "forbidden",
                "status": 403,
                "errors": {},
                "message": f"The {role} role may not do this.",
            }
            assert audit_count() == before, role
    assert actual == expected


def test_blinded_roles_never_reach_an_arm_releasing_route(app):
    for key in ARM_RELEASING_ROUTES:
        allowed = MATRIX[key][0]
        assert not allowed & BLINDED_ROLES, key
        policy = policy_for(app, routes(app)[key])
        assert not set(policy.roles) & BLINDED_ROLES, key


@pytest.mark.parametrize("route", list(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_without_a_valid_token_every_protected_route_is_401(client, tokens, route):
    method, rule = route
    url = concrete(rule)
    before = audit_count()
    for headers in ({}, bearer("not-a-real-token"), {"Authorization": "Bearer "}):
        # Even a body that would be invalid is refused as unauthenticated, not 422.
        response = client.open(url, method=method, headers=headers, json={"junk": 1})
        assert response.status_code == 401, headers
        assert response.json["code"] == "unauthorized"
        assert set(response.json) == {"code", "status", "message", "errors"}
    assert audit_count() == before


def test_every_non_public_route_in_the_map_requires_a_token(app, client):
    """Walk the map itself, so routes added later are covered even before the matrix is."""
    checked = 0
    for rule in app.url_map.iter_rules():
        policy = policy_for(app, rule.endpoint)
        if policy is None or policy.public:
            continue
        # "1" fits both string and <int:...> placeholders, so every route is reached.
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
        page = is_page_endpoint(app, rule.endpoint)
        for method in sorted(rule.methods - {"OPTIONS"}):
            response = client.open(url, method=method)
            if page:  # a page without a session sends the browser to sign in
                assert response.status_code == 302, (method, rule.rule)
                assert response.headers["Location"].startswith("/sign-in"), rule.rule
            else:
                assert response.status_code == 401, (method, rule.rule)
            checked += 1
    assert checked >= len(MATRIX)


@pytest.mark.parametrize("route", list(PUBLIC_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_public_routes_need_no_token(client, route):
    method, path = route
    response = client.open(path, method=method, json={} if method == "POST" else None)
    assert response.status_code == PUBLIC_ROUTES[route]


def test_health_and_spec_content(client):
    health = client.get("/api/v1/health")
    assert health.json["status"] == "ok"
    spec = client.get("/api/v1/openapi.json")
    assert spec.json["openapi"].startswith("3.")
    assert "/api/v1/participants" in spec.json["paths"]
