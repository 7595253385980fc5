"""The admin's account pages: create, activate, deactivate, reset, role and site changes."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("accounts_pages", __name__)
