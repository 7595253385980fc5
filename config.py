"""Configure the service from the environment.

Every setting comes from an environment variable so that one code base runs as a demo on
SQLite, in tests, and in production on PostgreSQL. Secrets are never defaults: the demo
writes them under ``instance/`` (ignored by git) and production passes them in.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("TRIAL_INSTANCE_DIR", PROJECT_ROOT / "instance"))


def _read_secret(name: str) -> str | None:
    """Return a secret from the environment, else from the file the demo wrote."""
    value = os.environ.get(name)
    if value:
        return value
    path = INSTANCE_DIR / "secrets" / name.lower()
    if path.exists():
        return path.read_text().strip()
    return None


def _default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'trial.db'}"


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    """Production-like defaults; every value can be overridden from the environment."""

    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or _default_database_url()
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    SECRET_KEY = _read_secret("SECRET_KEY")
    # Fernet key that encrypts arms and list seeds at rest (randomization module only).
    # Without it, unblinded operations refuse; blinded allocation still works.
    ARM_KEY = _read_secret("ARM_KEY")
    PROTOCOL_FILE = os.environ.get("PROTOCOL_FILE") or str(PROJECT_ROOT / "trial" / "protocol.toml")
    MIGRATIONS_DIR = str(PROJECT_ROOT / "migrations")
    INSTANCE_PATH = str(INSTANCE_DIR)

    # SQLite durability: WAL + synchronous=FULL are required; anything else is refused at
    # start unless ALLOW_UNSAFE_DURABILITY is set (only the crash test's negative control).
    SQLITE_SYNCHRONOUS = os.environ.get("SQLITE_SYNCHRONOUS", "FULL")
    SQLITE_BUSY_TIMEOUT_MS = _int_env("SQLITE_BUSY_TIMEOUT_MS", 30_000)
    ALLOW_UNSAFE_DURABILITY = os.environ.get("ALLOW_UNSAFE_DURABILITY") == "1"

    # Authentication
    TOKEN_TTL_HOURS = _int_env("TOKEN_TTL_HOURS", 12)
    CLI_TOKEN_TTL_DAYS = _int_env("CLI_TOKEN_TTL_DAYS", 90)
    # Throttling (Flask-Limiter; trial/auth/throttle.py). Limits are Flask-Limiter strings
    # ("10 per 15 minutes", several joined by ";"), checked at start. Anonymous logins
    # (POST /auth/token) are counted per client address and per name typed (failures only),
    # and trial-wide (every attempt that checks a password): the trial-wide cap bounds the
    # audit rows and argon2 work an anonymous flood can cost. The authenticated step-up (the
    # password re-typed for a code-break, a signature, an approval or a password change) has
    # its own limit per account, on wrong passwords its owner types: anonymous traffic never
    # counts against it. Counters live in RATELIMIT_STORAGE_URI: memory:// keeps them per
    # process (each gunicorn worker counts alone); use redis://host:6379 to share them
    # between workers and hosts.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "trial")
    RATELIMIT_ENABLED = True  # explicit: Flask-Limiter would otherwise inherit another app's
    LOGIN_LIMIT_PER_ADDRESS = os.environ.get("LOGIN_LIMIT_PER_ADDRESS", "30 per 15 minutes")
    LOGIN_LIMIT_PER_NAME = os.environ.get("LOGIN_LIMIT_PER_NAME", "10 per 15 minutes")
    LOGIN_LIMIT_TRIAL_WIDE = os.environ.get("LOGIN_LIMIT_TRIAL_WIDE", "300 per 15 minutes")
    STEP_UP_LIMIT = os.environ.get("STEP_UP_LIMIT", "10 per 15 minutes")
    # Reverse proxies in front of the app that append the client's address to
    # X-Forwarded-For (0: clients connect directly; the address is the socket's).
    TRUSTED_PROXIES = _int_env("TRUSTED_PROXIES", 0)
    # argon2id cost (RFC 9106 second recommended option is t=3, m=64 MiB).
    ARGON2_TIME_COST = _int_env("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_COST_KIB = _int_env("ARGON2_MEMORY_COST_KIB", 65_536)
    ARGON2_PARALLELISM = _int_env("ARGON2_PARALLELISM", 4)

    MAX_CONTENT_LENGTH = _int_env("MAX_CONTENT_LENGTH", 1_048_576)

    # Keep each site's worklist build per process until the trail or the site's date moves
    # (trial/worklist/services.py); 0 builds it on every request.
    WORKLIST_CACHE = os.environ.get("WORKLIST_CACHE", "1") != "0"

    # Web pages (trial/web): a signed session cookie that holds the browser's own session
    # token. HttpOnly and SameSite=Strict always; Secure when SESSION_COOKIE_SECURE=1 and on
    # every request that arrived over HTTPS (trial.web.session). A page session ends after
    # SESSION_IDLE_MINUTES without a request (21 CFR 11.300: automatic sign-out).
    SESSION_IDLE_MINUTES = float(os.environ.get("SESSION_IDLE_MINUTES", 15))
    SESSION_COOKIE_NAME = "trial_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Strict"
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE") == "1"
    # CSRF (Flask-WTF): checked on every page form by trial.web, never on the JSON API (its
    # bearer tokens are not sent by a browser on its own); valid as long as the session.
    WTF_CSRF_CHECK_DEFAULT = False
    WTF_CSRF_TIME_LIMIT = None

    # Helper processes writing a CSV bundle's record files, a range of participants each
    # (exports/helpers.py); 0 or 1: the whole bundle in the request's own process. Fewer
    # are used when each would have under EXPORT_HELPER_MIN_PARTICIPANTS participants.
    EXPORT_HELPERS = _int_env("EXPORT_HELPERS", 2)
    EXPORT_HELPER_MIN_PARTICIPANTS = _int_env("EXPORT_HELPER_MIN_PARTICIPANTS", 250)

    # E-mail notifications (trial/notifications): written to an outbox with each event,
    # delivered by `flask notifications send [--watch]` over SMTP. Without SMTP_HOST nothing
    # is sent and the outbox keeps every message (`flask notifications list` shows them).
    SMTP_HOST = os.environ.get("SMTP_HOST") or None
    SMTP_PORT = _int_env("SMTP_PORT", 25)
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME") or None
    SMTP_PASSWORD = _read_secret("SMTP_PASSWORD")
    SMTP_STARTTLS = os.environ.get("SMTP_STARTTLS", "0").lower() in ("1", "true", "yes")
    SMTP_TIMEOUT_SECONDS = float(os.environ.get("SMTP_TIMEOUT_SECONDS", 30))
    MAIL_FROM = os.environ.get("MAIL_FROM", "baclofen-trial@trial.local")
    # The right-hand side of every Message-ID (<random@domain>), fixed when a message is
    # written; by default MAIL_FROM's domain.
    MAIL_MESSAGE_ID_DOMAIN = os.environ.get("MAIL_MESSAGE_ID_DOMAIN") or None
    # The sponsor's safety desk: comma-separated addresses told of each serious adverse
    # event and each expedited report that becomes overdue.
    SAFETY_DESK_EMAILS = os.environ.get("SAFETY_DESK_EMAILS", "")
    # After a failed attempt a message waits NOTIFICATIONS_RETRY_SECONDS, doubling with each
    # further failure up to NOTIFICATIONS_RETRY_MAX_SECONDS; it is never given up.
    NOTIFICATIONS_RETRY_SECONDS = _int_env("NOTIFICATIONS_RETRY_SECONDS", 60)
    NOTIFICATIONS_RETRY_MAX_SECONDS = _int_env("NOTIFICATIONS_RETRY_MAX_SECONDS", 3600)
    # How long `notifications send --watch` sleeps between passes.
    NOTIFICATIONS_WATCH_SECONDS = float(os.environ.get("NOTIFICATIONS_WATCH_SECONDS", 30))

    # OpenAPI (flask-smorest)
    API_TITLE = "Baclofen AUD trial data service"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    TESTING = False


class TestConfig(Config):
    """Run fast and isolated: a throwaway secret and cheap password hashing."""

    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    ARM_KEY = "o2rFJOBMJ0cYOm0Fq1Tcr4xh5jk7TZ3xNYXYsrm2TVY="  # test-only Fernet key
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST_KIB = 1024
    ARGON2_PARALLELISM = 1
