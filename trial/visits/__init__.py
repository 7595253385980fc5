"""Visits: the schedule from the protocol, visit records with their forms, and signatures."""
