"""Randomization: the list, allocation, kits, and the only code that reads an arm.

``trial`` imports this package only in the app factory, through ``init_app``.
"""


def init_app(app, api) -> None:
    from randomization.cli import randomization_cli
    from randomization.demo import randomize_demo_participants
    from randomization.views import blp
    from trial.demo import register_demo_step

    api.register_blueprint(blp)
    from randomization.pages import bp as pages_bp
    from randomization.pages import participant_section
    from randomization.unblinded_pages import bp as unblinded_pages_bp
    from trial.web import register_participant_section

    app.register_blueprint(pages_bp)
    app.register_blueprint(unblinded_pages_bp)
    register_participant_section(app, participant_section)
    app.cli.add_command(randomization_cli)
    register_demo_step(app, randomize_demo_participants)
