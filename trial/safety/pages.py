"""The safety pages (being built: see issue 24)."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("safety_pages", __name__)
