"""The roles of DESIGN section 1 and which of them are bound to sites."""

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    INVESTIGATOR = "investigator"
    MONITOR = "monitor"
    DATA_MANAGER = "data_manager"
    STATISTICIAN = "statistician"
    UNBLINDED_STATISTICIAN = "unblinded_statistician"
    DSMB = "dsmb"


ALL_ROLES = frozenset(Role)
# Site staff work at exactly one site.
SINGLE_SITE_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR})
# Monitors see the sites they are assigned to (one or more).
MULTI_SITE_ROLES = frozenset({Role.MONITOR})
SITE_ROLES = SINGLE_SITE_ROLES | MULTI_SITE_ROLES
# Only this role may ever read an arm (through the randomization module).
UNBLINDED_ROLES = frozenset({Role.UNBLINDED_STATISTICIAN, Role.DSMB})
