"""Log in, see who you are, log out, and (admins) manage accounts."""

from flask import g

from trial.auth import accounts, approval, passwords, services, signin, tokens
from trial.auth.policy import allow, allow_any_user, public, usable_before_password_change
from trial.auth.roles import Role
from trial.auth.schemas import (
    AccountReasonSchema,
    CodeBreakApprovalRequestSchema,
    CodeBreakApprovalRevokeSchema,
    CodeBreakApprovalStateSchema,
    LoginSchema,
    PasswordChangeSchema,
    TemporaryPasswordSchema,
    TokenSchema,
    UserChangeSchema,
    UserCreateSchema,
    UserSchema,
)
from trial.auth.throttle import init_throttling, login_limits
from trial.blueprint import Blueprint
from trial.extensions import db

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Accounts and tokens")
# The limiter is bound to each app that registers these routes (it guards the login).
blp.record_once(lambda state: init_throttling(state.app))


@blp.route("/auth/token", methods=["POST"])
@public
@blp.arguments(LoginSchema)
@blp.response(201, TokenSchema)
@login_limits
def create_token(body):
    """Exchange a username and password for an API token.

    An unknown name and a wrong password get the same 401. Failed attempts are throttled per
    client address and per name typed, and attempts trial-wide (429 with Retry-After, whether
    or not the name exists); a throttled attempt checks no password and writes nothing.
    """
    token, row = signin.login(body["username"], body["password"])
    db.session.commit()
    return {
        "token": token,
        "expires_at": row.expires_at,
        "username": row.user.username,
        "role": row.user.role,
        "must_change_password": row.user.must_change_password,
    }


@blp.route("/auth/token", methods=["DELETE"])
@allow_any_user
@usable_before_password_change
@blp.response(204)
def revoke_current_token():
    """Revoke the token used for this request (log out)."""
    tokens.revoke_token(g.current_user, g.current_token)
    db.session.commit()


@blp.route("/auth/password", methods=["POST"])
@allow_any_user
@usable_before_password_change
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
def change_own_password(body):
    """Set your own password, typing the current one (a step-up); revokes your other tokens.

    Until an account's owner has done this, a password an admin chose at creation (or a
    reset) is in force, and the account cannot be approved to break codes.
    """
    passwords.change_own_password(
        g.current_user, g.current_token, body["current_password"], body["new_password"]
    )
    db.session.commit()


@blp.route("/auth/me", methods=["GET"])
@allow_any_user
@usable_before_password_change
@blp.response(200, UserSchema)
def who_am_i():
    """Show the account behind the token: role and sites."""
    return g.current_user


@blp.route("/users", methods=["GET"])
@allow(Role.ADMIN)
@blp.response(200, UserSchema(many=True))
def list_users():
    """List accounts (admins): role, sites, whether active, whether a reset awaits its owner."""
    return services.list_users(g.current_user)


@blp.route("/users", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(UserCreateSchema)
@blp.response(201, UserSchema)
def create_user(body):
    """Create an account (admins); tokens come from login or the command line."""
    user = services.create_user(
        g.current_user,
        username=body["username"],
        role=body["role"],
        site_codes=body["sites"],
        password=body["password"],
        email=body["email"],
    )
    db.session.commit()
    return user


@blp.route("/users/<username>", methods=["PATCH"])
@allow(Role.ADMIN)
@blp.arguments(UserChangeSchema)
@blp.response(200, UserSchema)
def change_user_role(body, username):
    """Change an account's role and sites, its e-mail address, or both, with a reason
    (admins). Admin is not unblinded."""
    user = services.require_user(username)
    if "role" in body:
        services.change_role(
            g.current_user,
            user,
            role=body["role"],
            site_codes=body.get("sites", []),
            reason=body["reason"],
        )
    if "email" in body:
        services.change_email(g.current_user, user, email=body["email"], reason=body["reason"])
    db.session.commit()
    return user


@blp.route("/users/<username>/code-break-approval", methods=["GET"])
@allow(Role.ADMIN, Role.UNBLINDED_STATISTICIAN)
@blp.response(200, CodeBreakApprovalStateSchema)
def get_code_break_approval(username):
    """Whether an account may break codes now, and why not (its latest approval, if any)."""
    return approval.approval_state(services.require_user(username))


@blp.route("/users/<username>/code-break-approval", methods=["POST"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.arguments(CodeBreakApprovalRequestSchema)
@blp.response(201, CodeBreakApprovalStateSchema)
def approve_code_break(body, username):
    """Approve an investigator account to break codes (unblinded statistician, with password).

    Confirm out of band first that the account is held by the investigator it names and that
    they set its password themselves. The approval is bound to the account's role, sites and
    credentials now: any change of those by someone else voids it.
    """
    user = services.require_user(username)
    approval.approve_code_break_with_password(
        g.current_user, user, reason=body["reason"], password=body["password"]
    )
    db.session.commit()
    return approval.approval_state(user)


@blp.route("/users/<username>/code-break-approval", methods=["DELETE"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.arguments(CodeBreakApprovalRevokeSchema)
@blp.response(200, CodeBreakApprovalStateSchema)
def revoke_code_break_approval(body, username):
    """Revoke an account's code-break approval, with a reason (unblinded statistician)."""
    user = services.require_user(username)
    approval.revoke_code_break_approval(g.current_user, user, reason=body["reason"])
    db.session.commit()
    return approval.approval_state(user)


@blp.route("/users/<username>/deactivate", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(AccountReasonSchema)
@blp.response(200, UserSchema)
def deactivate_user(body, username):
    """Deactivate an account, with a reason (admins): it cannot log in, and its tokens are
    revoked at once. Not your own account (409)."""
    user = accounts.deactivate_account(
        g.current_user, services.require_user(username), reason=body["reason"]
    )
    db.session.commit()
    return user


@blp.route("/users/<username>/reactivate", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(AccountReasonSchema)
@blp.response(200, UserSchema)
def reactivate_user(body, username):
    """Reactivate a deactivated account, with a reason (admins); no old token revives."""
    user = accounts.reactivate_account(
        g.current_user, services.require_user(username), reason=body["reason"]
    )
    db.session.commit()
    return user


@blp.route("/users/<username>/reset-password", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(AccountReasonSchema)
@blp.response(200, TemporaryPasswordSchema)
def reset_user_password(body, username):
    """Reset an account's password, with a reason (admins): answers a one-time temporary
    password, shown only here. Its tokens are revoked; until the owner sets their own
    password, a login with it reaches only POST /auth/password. Not for your own account
    (409) nor, over HTTP, an unblinded one (403)."""
    temporary, user = accounts.reset_password(
        g.current_user, services.require_user(username), reason=body["reason"]
    )
    db.session.commit()
    # Never cached: every answer carries Cache-Control: no-store (trial.http_security).
    return {
        "username": user.username,
        "temporary_password": temporary,
        "expires_at": user.password_expires_at,
        "must_change_password": True,
    }
