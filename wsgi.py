"""Expose the application for gunicorn and the ``flask --app wsgi`` command line."""

from trial import create_app

app = create_app()
