"""Study drug: tablets per day (never mg), dose changes with reasons, returns, first dose."""
