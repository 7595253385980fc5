"""Deny by default: every endpoint declares who may call it, or nobody can.

``allow(...)`` and ``public`` attach an ``AccessPolicy`` to a view function. A ``before_request``
hook authenticates the bearer token and checks the policy before any view runs; an endpoint
without a policy answers 403 to everyone. ``tests/test_access_policy.py`` walks ``app.url_map``
and fails on any route without one, so a forgotten declaration is caught before it ships.
An account whose password an admin reset reaches only the views marked
``usable_before_password_change`` until its owner sets their own (403 everywhere else).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g, request
from flask_smorest import Blueprint

from trial.auth.roles import ALL_ROLES, Role
from trial.errors import Forbidden, Unauthorized

BEARER_SECURITY = [{"bearerAuth": []}]
# The label of the tokens behind page sessions (trial.web.session); refused as bearer tokens.
BROWSER_SESSION = "browser session"


@dataclass(frozen=True)
class AccessPolicy:
    public: bool
    roles: frozenset[str]

    def permits(self, role: str) -> bool:
        return self.public or role in self.roles


PUBLIC = AccessPolicy(public=True, roles=frozenset())

# Endpoints registered by libraries, not by us, with their declared policy.
LIBRARY_ENDPOINT_POLICIES = {
    "api-docs.openapi_json": PUBLIC,
    "web.static": PUBLIC,  # the pages' style sheet and script
}


def allow(*roles: Role):
    """Declare the roles that may call a view; site scoping is then the service's job."""
    if not roles:
        raise ValueError("allow() needs at least one role; use public for open endpoints")
    policy = AccessPolicy(public=False, roles=frozenset(Role(r).value for r in roles))

    def decorator(view):
        view = Blueprint.doc(security=BEARER_SECURITY)(view)
        view.access_policy = policy
        return view

    return decorator


def allow_any_user(view):
    return allow(*ALL_ROLES)(view)


def usable_before_password_change(view):
    """Let an account whose password an admin reset reach this view before its owner has set
    their own (the password change itself, who am I, log out); every other view answers 403.
    """
    view.usable_before_password_change = True
    return view


def public(view):
    view.access_policy = PUBLIC
    return view


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"


def policy_for(app: Flask, endpoint: str) -> AccessPolicy | None:
    if endpoint in LIBRARY_ENDPOINT_POLICIES:
        return LIBRARY_ENDPOINT_POLICIES[endpoint]
    view = app.view_functions.get(endpoint)
    return getattr(view, "access_policy", None)


def is_page_endpoint(app: Flask, endpoint: str) -> bool:
    """Whether an endpoint is a web page (its blueprint's name ends in ``_pages``, or is
    ``web``): pages authenticate by session cookie, the API by bearer token."""
    blueprint = endpoint.partition(".")[0] if "." in endpoint else ""
    return blueprint == "web" or blueprint.endswith("_pages")


def bearer_token_from_request() -> str | None:
    """Accept a token only from the Authorization header (never a query string or cookie)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def enforce_access_policy():
    """Run before every request: authenticate, then check the endpoint's declared roles."""
    from trial.auth.tokens import authenticate_token

    if request.endpoint is None:  # no route matched: let Flask answer 404/405
        return None
    policy = policy_for(current_app, request.endpoint)
    if policy is None:
        raise Forbidden("This endpoint declares no access policy, so it is closed to everyone.")
    if is_page_endpoint(current_app, request.endpoint):
        from trial.web.session import authenticate_page_request

        return authenticate_page_request(policy)  # the session cookie, never a bearer token
    if policy.public:
        return None
    token = bearer_token_from_request()
    if token is None:
        raise Unauthorized("Send an API token as 'Authorization: Bearer TOKEN'.")
    user, token_row = authenticate_token(token)
    if token_row.label == BROWSER_SESSION:
        # A browser session's token opens pages only, through its cookie (trial.web.session).
        raise Unauthorized("The token is missing, invalid, expired or revoked.")
    g.current_user, g.current_token = user, token_row
    if user.must_change_password and not getattr(
        current_app.view_functions.get(request.endpoint), "usable_before_password_change", False
    ):
        # Here, once for every route: the temporary password an admin saw opens nothing but
        # its own replacement, whatever routes are added later.
        raise PasswordChangeRequired(
            "Your password was reset by an administrator: set your own with POST "
            "/api/v1/auth/password (current_password: the temporary one) before anything else."
        )
    if not policy.permits(user.role):
        raise Forbidden(f"The {user.role} role may not do this.")
    return None


def current_user():
    return g.current_user
