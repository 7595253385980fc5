"""The visits pages (being built: see issue 24)."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("visits_pages", __name__)
