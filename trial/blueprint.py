"""The API's blueprint class: flask-smorest's, with each argument schema built once."""

from __future__ import annotations

import flask_smorest

from trial.validation import TrialParser


class Blueprint(flask_smorest.Blueprint):
    # Bodies come from trial.json_input's one strict parse; schema and rule errors together.
    ARGUMENTS_PARSER = TrialParser()

    def arguments(self, schema, **kwargs):
        """As flask-smorest's, but a schema class is instantiated here, once.

        Given a class, webargs builds a new instance on every request, and the instance then
        rebuilds each nested schema it loads: a tenth of the CPU of a visit submission (five
        nested forms). Marshmallow schemas hold no per-load state, so one instance serves all.
        """
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, **kwargs)
