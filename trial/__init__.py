"""The trial core: the application factory and the features every other package builds on."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url

from config import Config
from trial.errors import ConfigurationError
from trial.extensions import db, migrate


def _prepare_sqlite_directory(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if parsed.database.startswith(":memory:") or "mode=memory" in url:
            raise ConfigurationError("an in-memory SQLite database cannot be durable")


def create_app(config_object: type[Config] | Config | None = None) -> Flask:
    """Build the app; refuse to start on a bad protocol file or unsafe durability settings."""
    from trial.database import init_database
    from trial.protocol.loader import load_protocol

    config_object = config_object or Config
    app = Flask(__name__, instance_path=str(config_object.INSTANCE_PATH), static_folder=None)
    app.config.from_object(config_object)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app.extensions["trial_protocol"] = load_protocol(app.config["PROTOCOL_FILE"])

    _prepare_sqlite_directory(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    migrate.init_app(app, db, directory=app.config["MIGRATIONS_DIR"], render_as_batch=True)
    with app.app_context():
        init_database(app, db.engine)

    _register_api(app)
    _register_pages(app)
    _register_cli(app)
    return app


def _register_api(app: Flask) -> None:
    from trial.audit.views import blp as audit_blp
    from trial.auth.policy import enforce_access_policy
    from trial.auth.views import blp as auth_blp
    from trial.conduct.views import blp as conduct_blp
    from trial.dosing.views import blp as dosing_blp
    from trial.errors import TrialApi, screen_request_input
    from trial.forms.views import blp as forms_blp
    from trial.health import blp as health_blp
    from trial.http_security import init_http_security
    from trial.participants.views import blp as participants_blp
    from trial.queries.views import blp as queries_blp
    from trial.safety.views import blp as safety_blp
    from trial.sites.views import blp as sites_blp
    from trial.verification.views import blp as verification_blp
    from trial.visits.views import blp as visits_blp
    from trial.worklist.views import blp as worklist_blp

    # One Api per app: flask-smorest keeps the spec on the Api object.
    api = TrialApi(app)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "API token from `users create` or POST /auth/token",
        },
    )
    for blueprint in (
        health_blp,
        auth_blp,
        sites_blp,
        participants_blp,
        audit_blp,
        visits_blp,
        forms_blp,
        dosing_blp,
        conduct_blp,
        queries_blp,
        safety_blp,
        worklist_blp,
        verification_blp,
    ):
        api.register_blueprint(blueprint)
    app.before_request(enforce_access_policy)
    init_http_security(app)  # after authentication: 401, then 413; headers on every answer
    app.before_request(screen_request_input)  # after authentication: 401 comes first

    # The only places trial touches the packages built on it: registering them.
    import exports
    import randomization
    import reports

    randomization.init_app(app, api)
    exports.init_app(app, api)
    reports.init_app(app, api)


def _register_pages(app: Flask) -> None:
    from trial.audit.pages import bp as audit_pages
    from trial.auth.pages import bp as accounts_pages
    from trial.conduct.pages import bp as conduct_pages
    from trial.dosing.pages import bp as dosing_pages
    from trial.participants.pages import bp as participants_pages
    from trial.queries.pages import bp as queries_pages
    from trial.records.pages import bp as records_pages
    from trial.safety.coding_pages import bp as coding_pages
    from trial.safety.expedited_pages import bp as expedited_pages
    from trial.safety.pages import bp as safety_pages
    from trial.sites.pages import bp as sites_pages
    from trial.verification.pages import bp as verification_pages
    from trial.visits.pages import bp as visits_pages
    from trial.web import init_web
    from trial.worklist.pages import bp as worklist_pages

    init_web(
        app,
        [
            participants_pages,
            worklist_pages,
            visits_pages,
            records_pages,
            safety_pages,
            dosing_pages,
            conduct_pages,
            queries_pages,
            verification_pages,
            coding_pages,
            expedited_pages,
            accounts_pages,
            sites_pages,
            audit_pages,
        ],
    )


def _register_cli(app: Flask) -> None:
    from trial.audit.cli import audit_cli
    from trial.auth.cli import users_cli
    from trial.demo import trial_cli
    from trial.maintenance.cli import register_maintenance_cli
    from trial.notifications.cli import notifications_cli
    from trial.safety.cli import meddra_cli

    for group in (users_cli, audit_cli, trial_cli, meddra_cli, notifications_cli):
        app.cli.add_command(group)
    register_maintenance_cli(app)
