"""Users, roles, sites they may see, API tokens, password login and the access policy."""
