"""Fixtures for the browser tests: a demo trial served by real gunicorn, and Chromium.

The pages are tested as people use them: Playwright drives Debian's ``chromium`` (never a
browser Playwright downloads) against gunicorn serving ``wsgi:app`` over a database prepared
here, in the test process, with ``flask trial demo`` (sites S01-S03, a generated list, one
user of every role with one password, investigators approved to break codes, 30 participants
at every stage of the schedule). The database and its server are made once per backend and
per pytest worker (xdist workers each get their own, on a free port) and shared by the tests
of that worker, so each test works on participants of its own (it registers them) or only
reads the demo's.

The test process keeps an app bound to the same database (``trial_site.app``) to check what
the pages wrote, as the API tests do with their ``app`` fixture.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    BACKENDS,
    RUN_ID,
    create_pg_database,
    drop_pg_database,
    make_config,
)
from tests.live_server import LiveServer, live_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN_LINE = re.compile(r"^(\S+)\s+([A-Za-z0-9_-]{40,})$")
PASSWORD_LINE = re.compile(r"password for every demo user: (\S+)")
DEMO_PARTICIPANTS = 30
# Each xdist worker names its PostgreSQL database apart from the others (RUN_ID is per process).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@dataclass
class TrialSite:
    """A demo trial behind a live server, with what the tests need to reach and check it."""

    backend: str
    database_url: str
    app: object  # a Flask app on the same database, for checks in the test process
    server: LiveServer
    password: str
    tokens: dict[str, str]
    directory: Path
    _api: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, user: str = "admin", **kwargs) -> requests.Response:
        """Call the JSON API as a demo user (by their demo token)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}", **kwargs.pop("headers", {})}
        return self._api.request(
            method, f"{self.server.api}{path}", headers=headers, timeout=30, **kwargs
        )

    def audit(self, **params) -> list[dict]:
        """Every audit event matching ``params``, as the admin reads them over the API (all
        pages, following X-Next-Cursor)."""
        rows, cursor = [], None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = self.api("GET", "/audit", params=query)
            assert response.status_code == 200, response.text[:500]
            rows.extend(response.json())
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return rows

    def query(self, fn):
        """Run ``fn()`` in an app context of the test process and return its result; the
        session is removed after, so nothing is cached or left locked for the server."""
        from trial.extensions import db

        with self.app.app_context():
            try:
                return fn()
            finally:
                db.session.remove()


@contextmanager
def _database(backend: str, request, directory: Path, suffix: str) -> Iterator[str]:
    if backend == "sqlite":
        path = directory / "trial.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    name = f"trial_b_{RUN_ID}_{WORKER}_{suffix}"
    drop_pg_database(name)
    url = create_pg_database(name, template=request.getfixturevalue("postgresql_template"))
    try:
        yield url
    finally:
        drop_pg_database(name)


def load_demo(app, participants: int = DEMO_PARTICIPANTS) -> tuple[str, dict[str, str]]:
    """``flask trial demo`` into the app's database; returns the password and tokens."""
    from trial.extensions import db

    with app.app_context():
        result = app.test_cli_runner().invoke(
            args=["trial", "demo", "--participants", str(participants), "--seed", "24"]
        )
        db.session.remove()
        db.engine.dispose()
    assert result.exit_code == 0, result.output[-2000:]
    password = PASSWORD_LINE.search(result.output).group(1)
    lines = result.output.splitlines()
    tokens = dict(m.groups() for line in lines if (m := TOKEN_LINE.match(line)))
    return password, tokens


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """The database behind the browser tests' server (session-wide: one server each)."""
    return request.param


@contextmanager
def serve_demo(
    backend: str,
    request,
    tmp_path_factory,
    *,
    name: str = "main",
    participants: int = DEMO_PARTICIPANTS,
    env: dict[str, str] | None = None,
) -> Iterator[TrialSite]:
    """A demo trial of ``participants`` on a database of its own, served by gunicorn with
    ``env`` added to its environment (``name`` keeps its database apart from others)."""
    from trial import create_app
    from trial.extensions import db

    directory = tmp_path_factory.mktemp(f"browser-{backend}-{name}")
    with _database(backend, request, directory, name) as url:
        app = create_app(make_config(url, directory / "instance"))
        password, tokens = load_demo(app, participants)
        try:
            with live_server(url, directory / "server", workers=2, env=env) as server:
                yield TrialSite(backend, url, app, server, password, tokens, directory)
        finally:
            with app.app_context():
                db.engine.dispose()


@pytest.fixture(scope="session")
def trial_site(backend, request, tmp_path_factory) -> Iterator[TrialSite]:
    """The demo trial served by gunicorn (two workers), shared by this worker's tests."""
    with serve_demo(backend, request, tmp_path_factory) as served:
        yield served


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright, one per pytest worker."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it): "
            "the browser tests need a real browser"
        )
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where screenshots go: $SCREENSHOT_DIR (made if missing) or a pytest tmp directory."""
    chosen = os.environ.get("SCREENSHOT_DIR")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class PageProblems(list):
    """What the browser reported that a person would not see: script errors and refusals by
    the page's own Content-Security-Policy (a page that breaks its own policy is broken)."""


def new_context(browser, site: TrialSite, *, bypass_csp: bool = False):
    """A fresh browser profile (no cookies) whose relative addresses go to ``site``."""
    context = browser.new_context(
        base_url=site.url,
        bypass_csp=bypass_csp,
        viewport={"width": 1280, "height": 900},
        locale="en-GB",
        timezone_id="Europe/Paris",
    )
    context.set_default_timeout(15_000)
    return context


def watch(page, problems: PageProblems) -> None:
    page.on("pageerror", lambda exc: problems.append(f"script error on {page.url}: {exc}"))

    def console(message):
        text = message.text
        if message.type == "error" and "Content Security Policy" in text:
            problems.append(f"CSP refusal on {page.url}: {text}")

    page.on("console", console)


@pytest.fixture
def context(browser, trial_site):
    """A fresh browser profile (no cookies) with the pages' own CSP in force."""
    made = new_context(browser, trial_site)
    try:
        yield made
    finally:
        made.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(context, request, screenshot_dir):
    """A tab in ``context``; the test fails if a page had a script error or broke its CSP.
    A failed test leaves a screenshot of the page as it was (``...--FAILED.png``)."""
    problems = PageProblems()
    tab = context.new_page()
    watch(tab, problems)
    yield tab
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed and not tab.is_closed():
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            tab.screenshot(path=str(screenshot_dir / f"{stem}--FAILED.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must never hide the failure
            pass
    assert not problems, "\n".join(problems)


@pytest.fixture
def axe_context(browser, trial_site):
    """A browser profile that lets axe-core's script in (``bypass_csp``): for axe checks only."""
    made = new_context(browser, trial_site, bypass_csp=True)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def axe_page(axe_context):
    tab = axe_context.new_page()
    problems = PageProblems()
    tab.on("pageerror", lambda exc: problems.append(f"script error on {tab.url}: {exc}"))
    yield tab
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot(screenshot_dir, request):
    """``shot(page, name)`` saves a full-page screenshot named after the test and ``name``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(tab, name: str) -> Path:
        path = screenshot_dir / f"{stem}--{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take
