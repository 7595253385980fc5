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


class UserSchema(ma.Schema):
    username = f.String(dump_only=True)
    role = f.String(dump_only=True)
    sites = f.List(f.String(), dump_only=True, attribute="site_codes")
    is_active = f.Boolean(dump_only=True)
    created_at = f.AwareDateTime(dump_only=True)


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


class UserRoleChangeSchema(ma.Schema):
    role = f.String(required=True, validate=v.OneOf(ROLE_CHOICES))
    sites = f.List(f.String(validate=v.Length(min=1, max=10)), load_default=list)
    reason = ReasonField(required=True)


class UsernamePath(ma.Schema):
    username = f.String(required=True)
