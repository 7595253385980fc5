"""Rows of the page permission matrix (tests/test_pages_policy.py) for this feature's pages:
(method, rule) -> the set of role names that get past the policy (None: public), and the
value each new URL variable takes in that test.

The outputs' pages: the blinded bundle (the roles of GET /api/v1/exports/blinded), the
safety reports (those of GET /api/v1/reports/safety; the closed report is then refused by
the service to the blinded ones) and the unblinded statistician's pages."""

EXPORTERS = {"statistician", "unblinded_statistician", "data_manager"}
REPORT_READERS = {"dsmb", "unblinded_statistician", "data_manager", "statistician"}
UNBLINDED = {"unblinded_statistician"}

ROWS: dict[tuple[str, str], set[str] | None] = {
    ("GET", "/bundle"): EXPORTERS,
    ("GET", "/bundle/download"): EXPORTERS,
    ("GET", "/reports"): REPORT_READERS,
    ("GET", "/reports/download"): REPORT_READERS,
    ("GET", "/randomization"): UNBLINDED,
    ("POST", "/randomization/key"): UNBLINDED,
    ("POST", "/randomization/arm-code"): UNBLINDED,
}
ARGUMENTS: dict[str, str] = {}
