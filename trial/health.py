"""Liveness and readiness for load balancers and the benchmarks' floor."""

import marshmallow as ma
from sqlalchemy import text

from trial.auth.policy import public
from trial.blueprint import Blueprint
from trial.extensions import db

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Service health")


class HealthSchema(ma.Schema):
    status = ma.fields.String(dump_only=True)
    database = ma.fields.String(dump_only=True)


@blp.route("/health", methods=["GET"])
@public
@blp.response(200, HealthSchema)
def health():
    """Answer whether the service and its database respond (no token needed)."""
    db.session.execute(text("SELECT 1"))
    return {"status": "ok", "database": db.engine.dialect.name}
