"""The site's worklist: what is due, missing, unsigned, queried and on the clock."""
