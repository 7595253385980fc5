"""Rows of the page permission matrix (tests/test_pages_policy.py) for this feature's pages:
(method, rule) -> the set of role names that get past the policy (None: public), and the
value each new URL variable takes in that test."""

ROWS: dict[tuple[str, str], set[str] | None] = {}
ARGUMENTS: dict[str, str] = {}
