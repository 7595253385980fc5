"""Rows of the page permission matrix (tests/test_pages_policy.py) for this feature's pages:
(method, rule) -> the set of role names that get past the policy (None: public), and the
value each new URL variable takes in that test.

The admin's pages keep their API operations' roles: accounts and a new site are the admin's
alone; the sites' list is every signed-in role's (as GET /api/v1/sites); the audit trail and
its download are GET /api/v1/audit's readers.
"""

ADMIN = {"admin"}
EVERYONE = {
    "admin", "coordinator", "investigator", "monitor", "data_manager", "statistician",
    "unblinded_statistician", "dsmb",
}  # fmt: skip
AUDIT_READERS = {"admin", "data_manager", "monitor", "coordinator", "investigator"}

ROWS: dict[tuple[str, str], set[str] | None] = {
    ("GET", "/users"): ADMIN,
    ("GET", "/users/new"): ADMIN,
    ("POST", "/users/new"): ADMIN,
    ("GET", "/users/<username>"): ADMIN,
    ("GET", "/users/<username>/deactivate"): ADMIN,
    ("POST", "/users/<username>/deactivate"): ADMIN,
    ("GET", "/users/<username>/reactivate"): ADMIN,
    ("POST", "/users/<username>/reactivate"): ADMIN,
    ("GET", "/users/<username>/reset-password"): ADMIN,
    ("POST", "/users/<username>/reset-password"): ADMIN,
    ("GET", "/users/<username>/role"): ADMIN,
    ("POST", "/users/<username>/role"): ADMIN,
    ("GET", "/users/<username>/email"): ADMIN,
    ("POST", "/users/<username>/email"): ADMIN,
    ("GET", "/sites"): EVERYONE,
    ("GET", "/sites/new"): ADMIN,
    ("POST", "/sites/new"): ADMIN,
    ("GET", "/audit-trail"): AUDIT_READERS,
    ("GET", "/audit-trail.csv"): AUDIT_READERS,
}
ARGUMENTS: dict[str, str] = {"username": "page.monitor"}
