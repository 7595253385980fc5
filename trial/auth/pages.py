"""The admin's account pages: the accounts, a new account, one account and what an admin
does to it (deactivate, reactivate, reset the password, change the role and sites or the
e-mail address), each with a reason.

Every form is loaded with the schema of its API operation (``POST /api/v1/users``,
``PATCH /api/v1/users/<username>``, ``.../deactivate``, ``.../reactivate``,
``.../reset-password``) and given to the same service, so a page refuses (every bad field at
once, nothing written), conflicts and audits exactly as the API does. A temporary password is
shown once, in the answer to the reset's POST: never on a page a GET shows, in a flash
message, or in the trail. A password typed at creation is never shown back, even in a form
refused for another field. Unblinded roles are granted only at the server's command line
(the service refuses them; the forms do not offer them).
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth import accounts, services
from trial.auth.policy import allow
from trial.auth.roles import UNBLINDED_ROLES, Role
from trial.auth.schemas import AccountReasonSchema, UserChangeSchema, UserCreateSchema, UserSchema
from trial.errors import Conflict, Forbidden, ValidationFailed
from trial.extensions import db
from trial.sites.services import list_sites
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("accounts_pages", __name__)

ACCOUNT = "/users/<username>"
REFUSALS = (ValidationFailed, Conflict, Forbidden)
CREATE_LABELS = {
    "username": "Username",
    "role": "Role",
    "sites": "Sites",
    "email": "E-mail address",
    "password": "Password",
}
ROLE_LABELS = {"role": "Role", "sites": "Sites", "reason": "Reason"}
EMAIL_LABELS = {"email": "E-mail address", "reason": "Reason"}
REASON_LABELS = {"reason": "Reason"}
_USER = UserSchema()


ROLE_NAMES = {r.value: r.value.replace("_", " ").capitalize() for r in Role} | {"dsmb": "DSMB"}


@bp.context_processor
def _role_names() -> dict:
    return {"role_name": lambda role: ROLE_NAMES.get(role, role)}


def _role_options() -> list[tuple[str, str]]:
    """The roles an admin may grant (the unblinded ones only at the command line)."""
    return [(r.value, ROLE_NAMES[r.value]) for r in Role if r not in UNBLINDED_ROLES]


def _site_options() -> list[tuple[str, str]]:
    return [(site.code, f"{site.code} – {site.name}") for site in list_sites()]


def _errors(refused, labels) -> dict[str, list[str]]:
    """A refusal as the form shows it; the service names a role's sites ``site``, the form's
    input is ``sites``."""
    if "site" in refused.errors and "sites" in labels:
        refused.errors.setdefault("sites", []).extend(refused.errors.pop("site"))
    return form_errors(refused, labels)


@bp.route("/users", methods=["GET"])
@allow(Role.ADMIN)
def users():
    """Every account by name: role, sites, whether active, e-mail address."""
    return render_template(
        "accounts/list.html",
        title="Accounts",
        users=UserSchema(many=True).dump(services.list_users(g.current_user)),
    )


@bp.route("/users/new", methods=["GET", "POST"])
@allow(Role.ADMIN)
def new_user():
    """Create an account: its name, role, sites and e-mail address (a password optional)."""
    errors: dict[str, list[str]] = {}
    status = 200
    form = MultiDict()
    if request.method == "POST":
        form = MultiDict((k, v) for k, v in request.form.items(multi=True) if k != "password")
        try:
            body = read_form(UserCreateSchema(), request.form)
            user = services.create_user(
                g.current_user,
                username=body["username"],
                role=body["role"],
                site_codes=body["sites"],
                password=body["password"],
                email=body["email"],
            )
            db.session.commit()
        except REFUSALS as refused:
            db.session.rollback()
            errors, status = _errors(refused, CREATE_LABELS), refused.status
        else:
            flash(f"Account {user.username} is created.", "success")
            return redirect(url_for("accounts_pages.user", username=user.username))
    return render_template(
        "accounts/new.html",
        title="Create an account",
        form=form,
        errors=errors,
        labels=CREATE_LABELS,
        roles=_role_options(),
        sites=_site_options(),
    ), status


@bp.route(ACCOUNT, methods=["GET"])
@allow(Role.ADMIN)
def user(username):
    """One account: its role, sites, state and e-mail address, and what may be done to it."""
    account = services.require_user(username)
    return render_template(
        "accounts/user.html",
        title=f"Account {account.username}",
        user=_USER.dump(account),
        unblinded=account.role in UNBLINDED_ROLES,
        yourself=account.id == g.current_user.id,
        expires_at=account.password_expires_at,
    )


def _action_page(account, action: str, form, errors, status: int, **context):
    return render_template(
        f"accounts/{action}.html",
        title=context.pop("title"),
        user=_USER.dump(account),
        form=form,
        errors=errors,
        unblinded=account.role in UNBLINDED_ROLES,
        yourself=account.id == g.current_user.id,
        **context,
    ), status


# What each reason-only form does: (template, title, service, what the flash says).
_REASON_ACTIONS = {
    "deactivate": ("Deactivate account", accounts.deactivate_account, "is deactivated"),
    "reactivate": ("Reactivate account", accounts.reactivate_account, "is active again"),
}


def _reason_action(username: str, action: str):
    title, service, done = _REASON_ACTIONS[action]
    account = services.require_user(username)
    if request.method == "GET":
        return _action_page(account, action, MultiDict(), {}, 200, title=title)
    try:
        body = read_form(AccountReasonSchema(), request.form, username=username)
        service(g.current_user, account, reason=body["reason"])
        db.session.commit()
    except REFUSALS as refused:
        db.session.rollback()
        account = services.require_user(username)
        errors = _errors(refused, REASON_LABELS)
        return _action_page(account, action, request.form, errors, refused.status, title=title)
    flash(f"Account {account.username} {done}.", "success")
    return redirect(url_for("accounts_pages.user", username=account.username))


@bp.route(f"{ACCOUNT}/deactivate", methods=["GET", "POST"])
@allow(Role.ADMIN)
def deactivate(username):
    """Deactivate an account, with a reason: it cannot sign in, its tokens are revoked."""
    return _reason_action(username, "deactivate")


@bp.route(f"{ACCOUNT}/reactivate", methods=["GET", "POST"])
@allow(Role.ADMIN)
def reactivate(username):
    """Reactivate a deactivated account, with a reason; no old token revives."""
    return _reason_action(username, "reactivate")


@bp.route(f"{ACCOUNT}/reset-password", methods=["GET", "POST"])
@allow(Role.ADMIN)
def reset_password(username):
    """Reset an account's password, with a reason; the answer shows the temporary password
    once (it is in no other page, message or audit row)."""
    title = "Reset password"
    account = services.require_user(username)
    if request.method == "GET":
        return _action_page(account, "reset_password", MultiDict(), {}, 200, title=title)
    try:
        body = read_form(AccountReasonSchema(), request.form, username=username)
        temporary, account = accounts.reset_password(g.current_user, account, reason=body["reason"])
        db.session.commit()
    except REFUSALS as refused:
        db.session.rollback()
        account = services.require_user(username)
        errors = _errors(refused, REASON_LABELS)
        return _action_page(
            account, "reset_password", request.form, errors, refused.status, title=title
        )
    return render_template(
        "accounts/temporary_password.html",
        title="Temporary password",
        user=_USER.dump(account),
        temporary_password=temporary,
        expires_at=account.password_expires_at,
    )


def _change(username: str, action: str, fields: tuple[str, ...], labels: dict, title: str):
    """A PATCH /users/<username> through a form of ``fields`` (with the reason)."""
    account = services.require_user(username)
    if request.method == "GET":
        current = _USER.dump(account)
        form = MultiDict(
            [("role", current["role"]), ("email", current.get("email") or "")]
            + [("sites", code) for code in current["sites"]]
        )
        return _action_page(
            account, action, form, {}, 200, title=title, roles=_role_options(),
            sites=_site_options(),
        )  # fmt: skip
    try:
        body = read_form(UserChangeSchema(), _only(request.form, fields), clear=True)
        # As PATCH /api/v1/users/<username> does with the same body.
        if "role" in body:
            services.change_role(
                g.current_user,
                account,
                role=body["role"],
                site_codes=body.get("sites", []),
                reason=body["reason"],
            )
        if "email" in body:
            services.change_email(
                g.current_user, account, email=body["email"], reason=body["reason"]
            )
        db.session.commit()
    except REFUSALS as refused:
        db.session.rollback()
        account = services.require_user(username)
        return _action_page(
            account, action, request.form, _errors(refused, labels), refused.status,
            title=title, roles=_role_options(), sites=_site_options(),
        )  # fmt: skip
    flash(f"Account {account.username} is changed.", "success")
    return redirect(url_for("accounts_pages.user", username=account.username))


def _only(form: MultiDict, fields: tuple[str, ...]) -> MultiDict:
    """The form's inputs of ``fields`` and the reason: a form sends only what it shows."""
    names = {*fields, "reason"} | {f"{name}.present" for name in fields}
    return MultiDict((k, v) for k, v in form.items(multi=True) if k in names)


@bp.route(f"{ACCOUNT}/role", methods=["GET", "POST"])
@allow(Role.ADMIN)
def change_role(username):
    """Change an account's role and sites, with a reason."""
    return _change(username, "role", ("role", "sites"), ROLE_LABELS, "Change role and sites")


@bp.route(f"{ACCOUNT}/email", methods=["GET", "POST"])
@allow(Role.ADMIN)
def change_email(username):
    """Change or remove an account's e-mail address, with a reason."""
    return _change(username, "email", ("email",), EMAIL_LABELS, "Change e-mail address")
