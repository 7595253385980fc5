"""Sign people in to the pages: a session cookie that carries a browser session token.

A page request is authenticated by the session cookie alone (never a bearer header), and an
API request by a bearer header alone (never the cookie), so a browser that visits another
site can never be made to call the API with its user's rights, and a token a script holds
cannot open the pages. The cookie is Flask's signed session; it holds the token of a
``browser session`` (an ``ApiToken`` row, so revoking, deactivating and expiry work as for
every token) and the time of the last request. A session unused for ``SESSION_IDLE_MINUTES``
is over: its token is revoked when it is next presented, and the page asks to sign in again.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from trial.auth.policy import BROWSER_SESSION, AccessPolicy, PasswordChangeRequired
from trial.database import utcnow
from trial.errors import Forbidden, Unauthorized
from trial.extensions import db


class SignInRequired(Unauthorized):
    """No session, or one that ended: the page redirects to sign-in (``trial.web.errors``)."""

    def __init__(self, message: str = "Sign in to continue.", *, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure whenever the request itself came over HTTPS."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _idle_limit() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def idle_limit_text() -> str:
    """The idle limit in words ("15 minutes", "1 minute"; seconds below a minute)."""
    seconds = round(_idle_limit().total_seconds())
    if seconds < 60:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = seconds / 60
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"


def start_session(username: str, password: str):
    """Check the password as the API's login does (same audit, same refusals) and open a
    browser session; the caller commits."""
    from trial.auth.signin import login_user
    from trial.auth.tokens import issue_token

    user = login_user(username, password)
    ttl = timedelta(hours=current_app.config["TOKEN_TTL_HOURS"])
    token, _ = issue_token(user, user, label=BROWSER_SESSION, ttl=ttl)
    _clear_session()
    session["token"] = token
    session["seen"] = utcnow().timestamp()
    return user


def end_session() -> None:
    """Revoke the browser session's token and forget the cookie; the caller commits."""
    from trial.auth.tokens import revoke_token

    token_row = getattr(g, "current_token", None)
    if token_row is not None and token_row.revoked_at is None:
        revoke_token(g.current_user, token_row)
    _clear_session()


def _clear_session() -> None:
    """Forget the session, its CSRF token included (a new one is made for the next form:
    a token seen before sign-in is worthless after it)."""
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF keeps the request's token in g as well


def _expire(token_row) -> None:
    from trial.auth.tokens import revoke_token

    if token_row.revoked_at is None:
        revoke_token(token_row.user, token_row)
        db.session.commit()
    session.clear()


def authenticate_page_request(policy: AccessPolicy) -> None:
    """Run before every page view: the session's user, the idle limit, the declared roles."""
    from trial.auth.tokens import authenticate_token

    # Nothing of an earlier request's user may remain (tests run many requests in one app
    # context, whose g outlives each request).
    for name in ("current_user", "current_token", "csrf_token"):
        g.pop(name, None)
    if policy.public:
        return
    token = session.get("token")
    if not isinstance(token, str):
        raise SignInRequired()
    try:
        user, token_row = authenticate_token(token)
    except Unauthorized:
        session.clear()
        raise SignInRequired("Your session has ended. Sign in again.") from None
    if token_row.label != BROWSER_SESSION:
        session.clear()
        raise SignInRequired()
    seen = session.get("seen")
    now = utcnow()
    if not isinstance(seen, (int, float)) or now.timestamp() - seen > _idle_limit().total_seconds():
        _expire(token_row)
        raise SignInRequired(
            f"You were signed out after {idle_limit_text()} without activity. Sign in again.",
            timed_out=True,
        )
    session["seen"] = now.timestamp()
    g.current_user, g.current_token = user, token_row
    if user.must_change_password and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS:
        raise PasswordChangeRequired("Set your own password before anything else.")
    if not policy.permits(user.role):
        raise Forbidden(f"The {user.role} role may not open this page.")


# Pages an account whose password an admin reset may still open.
PASSWORD_CHANGE_ENDPOINTS = frozenset({"web.change_password", "web.sign_out"})
