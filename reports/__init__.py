"""DSMB safety reports (open and closed PDFs) and the counting engine behind them.

``trial`` imports this package only in the app factory, through ``init_app``.
"""


def init_app(app, api) -> None:
    """Register the report routes and pages, and the ``reports`` command group."""
    from reports.cli import reports_cli
    from reports.pages import bp as pages_bp
    from reports.views import blp

    api.register_blueprint(blp)
    app.register_blueprint(pages_bp)
    app.cli.add_command(reports_cli)
