"""Log in, see who you are, log out, and (admins) manage accounts."""

from flask import g

from trial.auth import services
from trial.auth.policy import allow, allow_any_user, public
from trial.auth.roles import Role
from trial.auth.schemas import (
    LoginSchema,
    TokenSchema,
    UserCreateSchema,
    UserRoleChangeSchema,
    UserSchema,
)
from trial.blueprint import Blueprint
from trial.database import commit_then_read
from trial.errors import NotFound
from trial.extensions import db

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Accounts and tokens")


@blp.route("/auth/token", methods=["POST"])
@public
@blp.arguments(LoginSchema)
@blp.response(201, TokenSchema)
def create_token(body):
    """Exchange a username and password for an API token.

    An unknown name and a wrong password get the same 401; after too many failures in the
    window the name is locked (429) whether or not it exists.
    """
    issued = services.login(body["username"], body["password"])
    db.session.commit()
    if issued is None:
        raise services.login_refusal(body["username"])
    token, row = issued
    return {
        "token": token,
        "expires_at": row.expires_at,
        "username": row.user.username,
        "role": row.user.role,
    }


@blp.route("/auth/token", methods=["DELETE"])
@allow_any_user
@blp.response(204)
def revoke_current_token():
    """Revoke the token used for this request (log out)."""
    services.revoke_token(g.current_user, g.current_token)
    db.session.commit()


@blp.route("/auth/me", methods=["GET"])
@allow_any_user
@blp.response(200, UserSchema)
def who_am_i():
    """Show the account behind the token: role and sites."""
    return g.current_user


@blp.route("/users", methods=["GET"])
@allow(Role.ADMIN)
@blp.response(200, UserSchema(many=True))
def list_users():
    """List accounts (admins)."""
    from sqlalchemy import select

    from trial.auth.models import User

    return list(db.session.scalars(select(User).order_by(User.username)))


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
    )
    commit_then_read()
    return user


@blp.route("/users/<username>", methods=["PATCH"])
@allow(Role.ADMIN)
@blp.arguments(UserRoleChangeSchema)
@blp.response(200, UserSchema)
def change_user_role(body, username):
    """Change an account's role and sites, with a reason (admins). Admin is not unblinded."""
    user = services.get_user_by_username(username)
    if user is None:
        raise NotFound(f"No user {username!r}.")
    services.change_role(
        g.current_user, user, role=body["role"], site_codes=body["sites"], reason=body["reason"]
    )
    commit_then_read()
    return user
