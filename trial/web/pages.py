"""Sign in, sign out, set your own password, and the home page each role lands on."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, url_for

from trial.auth.policy import allow_any_user, public
from trial.auth.schemas import PasswordChangeSchema
from trial.auth.throttle import StepUpThrottled, check_sign_in_allowed, count_sign_in
from trial.errors import TrialError, Unauthorized, ValidationFailed
from trial.extensions import db
from trial.web import nav_links
from trial.web.blueprint import PageBlueprint, error_page
from trial.web.forms import form_errors, read_form
from trial.web.session import end_session, idle_limit_text, start_session

bp = PageBlueprint("web", __name__, static_folder="static", static_url_path="/static")


def _safe_next(target: str | None) -> str | None:
    """Only a path on this service (never another host) may follow a sign-in."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc or "\\" in target else target


@bp.route("/", methods=["GET"])
@allow_any_user
def home():
    """Each role lands on its first page (``trial.web.NAV_LINKS``): site staff and monitors on
    the worklist, the DSMB on its reports, an admin on the accounts, and so on."""
    links = nav_links(g.current_user.role)
    if links:
        return redirect(links[0][1])
    return render_template("web/home.html")


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in():
    """Sign in with a user name and password (throttled and audited as the API's login)."""
    if not current_app.secret_key:  # sessions and CSRF tokens are signed with it
        return error_page(
            503,
            "Signing in to the pages needs the SECRET_KEY setting, which this server lacks. "
            "The JSON API works without it.",
            title="Sign-in is not configured",
        )
    errors: dict[str, list[str]] = {}
    username = ""
    status = 200
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        if not username:
            errors["username"] = ["Enter your username."]
        if not password:
            errors["password"] = ["Enter your password."]
        if not errors:
            try:
                check_sign_in_allowed(username)
                try:
                    start_session(username, password)
                except Unauthorized:
                    count_sign_in(username, failed=True)
                    raise
                count_sign_in(username, failed=False)
                db.session.commit()
                return redirect(_safe_next(request.args.get("next")) or url_for("web.home"))
            except StepUpThrottled as exc:
                errors["password"] = [exc.message]
                status = 429
            except TrialError as exc:  # a wrong password: kept on record, answered alike
                db.session.commit()
                errors["password"] = ["The username or password is not right."]
                status = exc.status
        else:
            status = 422
    return render_template(
        "web/sign_in.html", errors=errors, username=username, idle_limit=idle_limit_text()
    ), status


@bp.route("/sign-out", methods=["GET"])
@allow_any_user
def sign_out():
    """End the session: its token is revoked at once (a copied cookie opens nothing)."""
    end_session()
    db.session.commit()
    flash("You are signed out.", "info")
    return redirect(url_for("web.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
@allow_any_user
def change_password():
    """Set your own password (required after an admin's reset)."""
    from trial.auth.passwords import change_own_password

    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        try:
            body = read_form(PasswordChangeSchema(), request.form)
        except ValidationFailed as exc:
            errors = form_errors(exc)
            body = None
        if request.form.get("new_password") != request.form.get("confirm_password"):
            errors["confirm_password"] = ["The two new passwords are not the same."]
        if not errors:
            try:
                change_own_password(
                    g.current_user, g.current_token, body["current_password"],
                    body["new_password"],
                )  # fmt: skip
                db.session.commit()
                flash("Your password is changed.", "success")
                return redirect(url_for("web.home"))
            except ValidationFailed as exc:
                errors = form_errors(exc)
            except TrialError as exc:
                db.session.commit() if exc.status == 403 else db.session.rollback()
                errors = {"current_password": [exc.message]}
        status = 422
    return render_template("web/password.html", errors=errors), status
