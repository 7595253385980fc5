"""Participants: registration at a site, and the site-scoped reads every later form hangs on."""
