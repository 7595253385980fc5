"""Sites of the trial: the unit of access for site staff."""
