"""List sites (everyone) and add them (admins)."""

from flask import g

from trial.auth.policy import allow, allow_any_user
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.sites import services
from trial.sites.schemas import SiteSchema

blp = Blueprint("sites", __name__, url_prefix="/api/v1", description="Sites")


@blp.route("/sites", methods=["GET"])
@allow_any_user
@blp.response(200, SiteSchema(many=True))
def list_sites():
    """List the trial's sites."""
    return services.list_sites()


@blp.route("/sites", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(SiteSchema)
@blp.response(201, SiteSchema)
def create_site(body):
    """Add a site (admins)."""
    site = services.create_site(g.current_user, **body)
    db.session.commit()
    return site
