"""The data manager's coding pages: uncoded verbatim terms, coded with the dictionary search."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("coding_pages", __name__)
