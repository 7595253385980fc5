"""Throttle anonymous logins and the authenticated step-up, with Flask-Limiter.

Two budgets, kept apart so that neither can be spent by the other:

- **Anonymous logins** (``POST /auth/token``): failed attempts per client address and per
  name typed, and every attempt that checks a password trial-wide. A throttled attempt is
  refused by the limiter before the view runs: no argon2 work, no database access, no audit
  row. So an anonymous flood costs at most the trial-wide cap in failed-login rows and
  password checks per window, whatever its size.
- **The step-up**: the password an authenticated user types again before a code-break, a
  signature, a code-break approval or a password change. Counted per account, on wrong
  passwords only, under a key no anonymous request can reach: failed logins under an
  investigator's name (anyone can send those) never stop that investigator, holding a valid
  token, from breaking a code in an emergency. A stolen token still cannot be used to guess
  the password without limit.

Counters live in ``RATELIMIT_STORAGE_URI`` (memory:// by default: per process; Redis to share
them between workers and hosts). The limiter is one extension object, bound to each app by
``init_throttling``; each binding builds the app's storage from its own configuration.
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial

from flask import Flask, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many

from trial.errors import ConfigurationError, TooManyRequests, error_response

LIMIT_SETTINGS = (
    "LOGIN_LIMIT_PER_ADDRESS",
    "LOGIN_LIMIT_PER_NAME",
    "LOGIN_LIMIT_TRIAL_WIDE",
    "STEP_UP_LIMIT",
)
STEP_UP_SCOPE = "step-up"
log = logging.getLogger(__name__)


def client_address() -> str:
    """The client's address: as the WSGI server saw it, or, behind ``TRUSTED_PROXIES``
    reverse proxies, as the nearest of them recorded it in X-Forwarded-For.

    Without the setting behind a proxy, every client would share the proxy's address and
    the per-address limit would act as a second trial-wide one. Only the entries the trusted
    proxies appended are believed: a client can write anything into the header's start.
    """
    trusted = current_app.config.get("TRUSTED_PROXIES", 0)
    if trusted:
        forwarded = [
            part.strip()
            for part in request.headers.get("X-Forwarded-For", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= trusted:
            return forwarded[-trusted]
    return request.remote_addr or "unknown"


# Every setting a second app could otherwise inherit from the first is given here, not read
# from the first app's configuration (Flask-Limiter keeps what its first init_app found).
# No X-RateLimit-* headers: they would tell any anonymous caller how many logins the trial
# has seen lately; a 429 carries Retry-After (``_rate_limited``).
limiter = Limiter(
    key_func=client_address,
    strategy="moving-window",
    headers_enabled=False,
    fail_on_first_breach=True,
    swallow_errors=False,
    # Storage unreachable (Redis down): count in this process's memory meanwhile, rather
    # than answer 500 to every login.
    in_memory_fallback_enabled=True,
)


class StepUpThrottled(TooManyRequests):
    """Too many wrong step-up passwords for one account: 429 with a Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


# --- anonymous logins ------------------------------------------------------------------


def _typed_name_key() -> str:
    """The name typed, as a keyed digest (the limiter's storage never holds typed text)."""
    from trial.auth.services import normalize_username
    from trial.auth.signin import keyed_digest

    try:
        body = request.get_json(silent=True)
    except Exception:  # noqa: BLE001 - the view's own parsing answers for a bad body
        body = None
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str):
        return "name:none"
    return "name:" + keyed_digest(normalize_username(name)[:150])


def _trial_wide_key() -> str:
    return "trial"


def _login_failed(response) -> bool:
    return response.status_code == 401


def _password_checked(response) -> bool:
    """A login that got as far as argon2: issued (201) or refused (401)."""
    return response.status_code in (201, 401)


def _setting(name: str):
    return lambda: current_app.config[name]


def login_limits(view):
    """Apply the three anonymous-login limits to the login view (innermost decorator).

    Each is tested before the view runs and counted after it, by the response's status: the
    address and name limits count failures, the trial-wide cap every password checked.
    """
    decorators = (
        limiter.limit(
            _setting("LOGIN_LIMIT_TRIAL_WIDE"),
            key_func=_trial_wide_key,
            deduct_when=_password_checked,
            error_message="Too many login attempts across the trial; try again later. "
            "Tokens already issued keep working.",
        ),
        limiter.limit(
            _setting("LOGIN_LIMIT_PER_ADDRESS"),
            key_func=client_address,
            deduct_when=_login_failed,
            error_message="Too many failed logins from this address; try again later.",
        ),
        limiter.limit(
            _setting("LOGIN_LIMIT_PER_NAME"),
            key_func=_typed_name_key,
            deduct_when=_login_failed,
            error_message="Too many failed logins for this name; try again later.",
        ),
    )
    for decorate in decorators:
        view = decorate(view)
    return view


def _rate_limited(exc: RateLimitExceeded):
    response = error_response(429, "too_many_requests", exc.description)
    current = limiter.current_limit
    if current is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(current.reset_at - time.time())))
    return response


# --- the authenticated step-up -----------------------------------------------------------


def _step_up_items() -> list[RateLimitItem]:
    return parse_many(current_app.config["STEP_UP_LIMIT"])


def _step_up_keys(user) -> tuple[str, ...]:
    return (current_app.config.get("RATELIMIT_KEY_PREFIX") or "trial", STEP_UP_SCOPE, str(user.id))


def check_step_up_allowed(user) -> None:
    """Refuse (429) before any password is checked once the account's budget is spent.

    If the counters cannot be read (the storage is down), the step-up goes on: it guards an
    emergency, and the password is still checked; the failure is logged.
    """
    keys = _step_up_keys(user)
    for item in _step_up_items():
        try:
            allowed = limiter.limiter.test(item, *keys)
            reset = None if allowed else limiter.limiter.get_window_stats(item, *keys).reset_time
        except Exception:  # noqa: BLE001 - any storage failure: see the docstring
            log.exception("step-up throttle storage unreachable; password checked unthrottled")
            return
        if reset is not None:
            retry_after = max(1, math.ceil(reset - time.time()))
            raise StepUpThrottled(
                f"Too many wrong passwords for this account; try again in {retry_after} s.",
                retry_after,
            )


def count_wrong_step_up(user) -> None:
    keys = _step_up_keys(user)
    try:
        for item in _step_up_items():
            limiter.limiter.hit(item, *keys)
    except Exception:  # noqa: BLE001 - as in check_step_up_allowed
        log.exception("step-up throttle storage unreachable; a wrong password went uncounted")


def _step_up_throttled(exc: StepUpThrottled):
    response = error_response(exc.status, exc.code, exc.message, exc.errors)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


# --- binding -----------------------------------------------------------------------------


def _is_limiters(hook) -> bool:
    """Whether a request hook is one Flask-Limiter's ``init_app`` registered for ``limiter``
    (bound methods of it, or a partial taking it first)."""
    return getattr(hook, "__self__", None) is limiter or (
        isinstance(hook, partial) and hook.args[:1] == (limiter,)
    )


def _scope_hooks_to(app: Flask, blueprint: str) -> None:
    """Run the limiter's request hooks for one blueprint's requests, not for every request.

    Flask-Limiter hooks the whole app (check, count, headers, context reset): about 0.1 ms
    on every request, though only the login is limited here (its decorator does the check;
    the hooks count its failures) and the step-up uses the storage directly. Moved to the
    blueprint that holds the login, they run for its routes only.
    """
    for registry in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks = registry.get(None, [])
        moved = [hook for hook in hooks if _is_limiters(hook)]
        if len(moved) != 1:
            raise RuntimeError("Flask-Limiter's request hooks are not the ones expected")
        registry[None] = [hook for hook in hooks if not _is_limiters(hook)]
        registry.setdefault(blueprint, []).extend(moved)


def init_throttling(app: Flask) -> None:
    """Check the limits, bind the limiter to the app, and give its 429s the error shape."""
    for name in LIMIT_SETTINGS:
        try:
            if not parse_many(str(app.config[name])):
                raise ValueError("no limit")
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(
                f"{name}={app.config.get(name)!r} is not a rate limit such as "
                f"'10 per 15 minutes' ({exc})"
            ) from exc
    limiter.init_app(app)
    _scope_hooks_to(app, "auth")
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(StepUpThrottled, _step_up_throttled)


# --- the pages' sign-in ------------------------------------------------------------------


def _sign_in_counters(name: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """(setting, keys, counts failures only) for the three anonymous-login limits, as the
    page's sign-in form counts them (its own counters, the API login's settings)."""
    from trial.auth.services import normalize_username
    from trial.auth.signin import keyed_digest

    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or "trial"
    name_key = "name:" + keyed_digest(normalize_username(name)[:150])
    return [
        ("LOGIN_LIMIT_TRIAL_WIDE", (prefix, "sign-in", "trial"), False),
        ("LOGIN_LIMIT_PER_ADDRESS", (prefix, "sign-in", "address", client_address()), True),
        ("LOGIN_LIMIT_PER_NAME", (prefix, "sign-in", name_key), True),
    ]


def check_sign_in_allowed(name: str) -> None:
    """Refuse a page sign-in (429) before its password is checked once a limit is spent."""
    for setting, keys, _ in _sign_in_counters(name):
        for item in parse_many(current_app.config[setting]):
            if not limiter.limiter.test(item, *keys):
                reset = limiter.limiter.get_window_stats(item, *keys).reset_time
                retry_after = max(1, math.ceil(reset - time.time()))
                raise StepUpThrottled(
                    f"Too many sign-in attempts; try again in {retry_after} s.", retry_after
                )


def count_sign_in(name: str, *, failed: bool) -> None:
    """Count a page sign-in whose password was checked (every one trial-wide, failures per
    address and per name), as the API login's limits count."""
    for setting, keys, failures_only in _sign_in_counters(name):
        if failed or not failures_only:
            for item in parse_many(current_app.config[setting]):
                limiter.limiter.hit(item, *keys)
