"""The audit-trail browser: filter, read newest first, download what the filter shows."""

from __future__ import annotations

from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("audit_pages", __name__)
