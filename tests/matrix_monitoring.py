"""Rows of the page permission matrix (tests/test_pages_policy.py) for this feature's pages:
(method, rule) -> the set of role names that get past the policy (None: public), and the
value each new URL variable takes in that test."""

SITE_STAFF = {"coordinator", "investigator"}
OWNERS = {"monitor", "data_manager"}

ROWS: dict[tuple[str, str], set[str] | None] = {
    # source data verification: monitors mark; monitors and data managers read the progress
    ("GET", "/verification"): OWNERS,
    ("POST", "/visits/<int:visit_id>/verify"): {"monitor"},
    # data queries: monitors and data managers raise, close and re-open
    ("GET", "/queries/raise"): OWNERS,
    ("POST", "/queries/raise"): OWNERS,
    ("POST", "/queries/<query_id>/close"): OWNERS,
    ("POST", "/queries/<query_id>/reopen"): OWNERS,
    # coding of adverse-event terms: data managers
    ("GET", "/coding"): {"data_manager"},
    ("GET", "/coding/<int:record_id>"): {"data_manager"},
    ("POST", "/coding/<int:record_id>"): {"data_manager"},
    # expedited reports of serious AEs: every reader of the API's list; the site submits,
    # the safety desk (data manager) acknowledges
    ("GET", "/expedited-reports"): SITE_STAFF | OWNERS | {"unblinded_statistician", "dsmb"},
    ("POST", "/expedited-reports/<int:report_id>/submit"): SITE_STAFF,
    ("POST", "/expedited-reports/<int:report_id>/acknowledge"): {"data_manager"},
}
ARGUMENTS: dict[str, str] = {"report_id": "1"}
