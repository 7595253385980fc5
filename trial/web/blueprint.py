"""The blueprint every feature's pages use: HTML errors, and the session sign-in.

A page blueprint's name ends in ``_pages`` (``trial.auth.policy.is_page_endpoint``), so the
access policy authenticates its requests by the session cookie, and its templates live in
the feature's own ``templates/<feature>/`` folder. Errors raised by a page, or by the policy
before it, are answered as pages: no session is a redirect to sign-in, a refusal is a page
that says why in plain words, and anything unexpected a page with a reference, as the API
answers it.
"""

from __future__ import annotations

import logging
import uuid

import flask
from flask import redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from trial.auth.policy import PasswordChangeRequired
from trial.errors import RecordedRefusal, TrialError, keep_recorded_refusal
from trial.web.session import SignInRequired

log = logging.getLogger(__name__)

TITLES = {
    400: "The form could not be sent",
    403: "You cannot open this page",
    404: "Page not found",
    405: "Page not found",
    409: "This cannot be done now",
    413: "The form is too large",
    422: "There is a problem",
    429: "Too many attempts",
}


class PageBlueprint(flask.Blueprint):
    """A feature's pages (``<feature>_pages``), beside the feature's JSON API views."""

    def __init__(self, name: str, import_name: str, **kwargs):
        if not (name == "web" or name.endswith("_pages")):
            raise ValueError(f"a page blueprint's name ends in '_pages', not {name!r}")
        kwargs.setdefault("template_folder", "templates")
        super().__init__(name, import_name, **kwargs)
        self.register_error_handler(SignInRequired, _to_sign_in)
        self.register_error_handler(PasswordChangeRequired, _to_password_change)
        self.register_error_handler(CSRFError, _csrf_refused)
        self.register_error_handler(TrialError, _refused)
        self.register_error_handler(HTTPException, _http_error)
        self.register_error_handler(Exception, _unexpected)


def error_page(status: int, message: str, title: str | None = None):
    title = title or TITLES.get(status, "Something went wrong")
    body = render_template("web/error.html", title=title, message=message, status=status)
    return body, status


def _to_sign_in(exc: SignInRequired):
    flask.flash(exc.message, "timeout" if exc.timed_out else "info")
    target = request.full_path if request.method == "GET" else None
    if target and target.endswith("?"):
        target = target[:-1]
    args = {"next": target} if target and target != "/" else {}
    return redirect(url_for("web.sign_in", **args))


def _to_password_change(exc: PasswordChangeRequired):
    return redirect(url_for("web.change_password"))


def _csrf_refused(exc: CSRFError):
    log.warning("CSRF refused: %s", exc.description)
    return error_page(
        400,
        "The form was out of date or not sent from this service, so nothing was saved. "
        "Go back, reload the page and send it again.",
    )


def _refused(exc: TrialError):
    if isinstance(exc, RecordedRefusal):
        keep_recorded_refusal()
    return error_page(exc.status, exc.message)


def _http_error(exc: HTTPException):
    status = exc.code or 500
    if status in (404, 405):
        return error_page(status, "There is no page at this address.")
    if status == 429:
        return error_page(429, exc.description or "Too many attempts; try again later.")
    return error_page(status, exc.description or exc.name)


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error on a page, reference %s", reference)
    return error_page(
        500,
        f"Something went wrong on our side and nothing was saved. Reference: {reference}.",
        title="Sorry, there is a problem with the service",
    )
