"""Safety: adverse events, MedDRA coding and expedited reports of serious events."""
