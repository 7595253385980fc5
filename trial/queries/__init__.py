"""Data queries: monitors (or edit checks) ask, sites answer, monitors close or re-open; every
step audited."""
