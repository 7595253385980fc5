"""Source data verification: a monitor marks a visit's forms verified against source."""
