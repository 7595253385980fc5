"""Everything that leaves the system: the key file now; blinded bundles and PDF reports next.

``trial`` imports this package only in the app factory, through ``init_app``.
"""


def init_app(app, api) -> None:
    from exports.cli import exports_cli
    from exports.pages import bp as pages_bp
    from exports.views import blp

    api.register_blueprint(blp)
    app.register_blueprint(pages_bp)
    app.cli.add_command(exports_cli)
