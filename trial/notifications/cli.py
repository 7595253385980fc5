"""``flask notifications ...``: deliver the outbox and look at it."""

from flask.cli import AppGroup

from trial.notifications import models  # noqa: F401  (the outbox table is the app's)

notifications_cli = AppGroup("notifications", help="Deliver and list e-mail notifications.")
