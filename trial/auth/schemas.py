import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.auth.roles import Role
from trial.reasons import ReasonField

ROLE_CHOICES = [role.value for role in Role]


class LoginSchema(ma.Schema):
    # 80: the audit trail records the name typed (entity_id is 80 wide; longer was a 500).
    username = f.String(required=True, load_only=True, validate=v.Length(min=1, max=80))
    password = f.String(required=True, load_only=True, validate=v.Length(min=1, max=1024))


class TokenSchema(ma.Schema):
    token = f.String(dump_only=True, metadata={"description": "Shown once; send as Bearer."})
    expires_at = f.AwareDateTime(dump_only=True)
    username = f.String(dump_only=True)
    role = f.String(dump_only=True)
    must_change_password = f.Boolean(
        dump_only=True,
        metadata={"description": "If true, the token reaches only POST /auth/password."},
    )


class UserSchema(ma.Schema):
    username = f.String(dump_only=True)
    role = f.String(dump_only=True)
    sites = f.List(f.String(), dump_only=True, attribute="site_codes")
    is_active = f.Boolean(dump_only=True)
    created_at = f.AwareDateTime(dump_only=True)
    must_change_password = f.Boolean(
        dump_only=True,
        metadata={"description": "An admin reset the password; the owner has not set theirs."},
    )
    password_set_at = f.AwareDateTime(dump_only=True, allow_none=True)
    email = f.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Where the account's notifications go (null: nowhere)."},
    )


class AccountReasonSchema(ma.Schema):
    reason = ReasonField(required=True)


class TemporaryPasswordSchema(ma.Schema):
    username = f.String(dump_only=True)
    temporary_password = f.String(
        dump_only=True,
        metadata={
            "description": "Shown once, never stored in clear, logged or audited; hand it to "
            "the owner, who must replace it before anything else."
        },
    )
    expires_at = f.AwareDateTime(dump_only=True)
    must_change_password = f.Boolean(dump_only=True)


class UserCreateSchema(ma.Schema):
    # At most 80 characters: the audit trail's entity_id holds the name (longer was a 500).
    username = f.String(
        required=True,
        validate=v.Regexp(
            r"^[A-Za-z0-9][A-Za-z0-9._-]{1,79}$",
            error="Use 2 to 80 letters, digits, dots, dashes or underscores.",
        ),
    )
    role = f.String(required=True, validate=v.OneOf(ROLE_CHOICES))
    sites = f.List(f.String(validate=v.Length(min=1, max=10)), load_default=list)
    password = f.String(load_default=None, allow_none=True, validate=v.Length(min=12, max=1024))
    email = f.Email(
        load_default=None,
        allow_none=True,
        validate=v.Length(max=254),
        metadata={"description": "Where the account's notifications go; optional."},
    )


class UserRoleChangeSchema(ma.Schema):
    role = f.String(required=True, validate=v.OneOf(ROLE_CHOICES))
    sites = f.List(f.String(validate=v.Length(min=1, max=10)), load_default=list)
    reason = ReasonField(required=True)


class UserChangeSchema(ma.Schema):
    """PATCH /users/<username>: the role (with its sites), the e-mail address, or both."""

    role = f.String(validate=v.OneOf(ROLE_CHOICES))
    sites = f.List(f.String(validate=v.Length(min=1, max=10)))
    email = f.Email(
        allow_none=True,
        validate=v.Length(max=254),
        metadata={"description": "The new address; null removes it."},
    )
    reason = ReasonField(required=True)

    @ma.validates_schema
    def _something_to_change(self, data, **kwargs):
        if "role" not in data and "email" not in data:
            raise ma.ValidationError("Give a role, an email, or both.", "role")
        if "sites" in data and "role" not in data:
            raise ma.ValidationError("Sites change with the role: give the role too.", "role")


class PasswordChangeSchema(ma.Schema):
    current_password = f.String(required=True, load_only=True, validate=v.Length(min=1, max=1024))
    new_password = f.String(required=True, load_only=True, validate=v.Length(min=12, max=1024))


class CodeBreakApprovalRequestSchema(ma.Schema):
    reason = ReasonField(required=True)
    password = f.String(
        required=True,
        load_only=True,
        validate=v.Length(min=1, max=1024),
        metadata={"description": "The approving unblinded statistician's own password."},
    )


class CodeBreakApprovalRevokeSchema(ma.Schema):
    reason = ReasonField(required=True)


class CodeBreakApprovalSchema(ma.Schema):
    approved_by = f.Function(lambda a: a.approved_by.username, dump_only=True)
    approved_at = f.AwareDateTime(dump_only=True)
    reason = f.String(dump_only=True)
    role = f.String(dump_only=True, metadata={"description": "The role it was given for."})
    sites = f.Function(
        lambda a: [code for code in a.sites.split(",") if code],
        dump_only=True,
        metadata={"description": "The sites it was given for."},
    )
    revoked_at = f.AwareDateTime(dump_only=True, allow_none=True)
    revoked_by = f.Function(
        lambda a: a.revoked_by.username if a.revoked_by else None, dump_only=True
    )
    revoke_reason = f.String(dump_only=True, allow_none=True)


class CodeBreakApprovalStateSchema(ma.Schema):
    username = f.Function(lambda s: s.user.username, dump_only=True)
    role = f.Function(lambda s: s.user.role, dump_only=True)
    sites = f.Function(lambda s: s.user.site_codes, dump_only=True)
    password_set_by_owner = f.Function(
        lambda s: s.user.password_set_by_owner,
        dump_only=True,
        metadata={"description": "Only then can the account be approved."},
    )
    password_set_at = f.Function(
        lambda s: s.user.password_set_at.isoformat() if s.user.password_set_at else None,
        dump_only=True,
    )
    valid = f.Boolean(
        dump_only=True, metadata={"description": "Whether the account may break codes now."}
    )
    problem = f.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Why the approval does not stand (null when it does)."},
    )
    approval = f.Nested(
        CodeBreakApprovalSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "The latest approval, standing, void or revoked."},
    )
