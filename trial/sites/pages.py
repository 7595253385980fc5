"""The admin's site pages: the sites and a new site."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("sites_pages", __name__)
