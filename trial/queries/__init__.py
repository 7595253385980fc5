"""Data queries: monitors ask, sites answer, monitors close or re-open; every step audited."""
