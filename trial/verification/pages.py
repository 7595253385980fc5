"""Source data verification pages (monitor): mark a visit verified, and what is left per site."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("verification_pages", __name__)
