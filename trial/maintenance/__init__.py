"""Operating the database: online backup and restore (``flask db backup`` / ``flask db restore``).

The commands join Flask-Migrate's ``db`` group (see ``cli.py``); the work is in ``backup.py``,
which knows nothing of Flask beyond the database URL it is given.
"""
