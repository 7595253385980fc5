"""Fixtures: a fresh, migrated database per test on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

The schema is built once per session by running the real Alembic migrations into a template;
each test then gets its own copy (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL), so tests exercise the migrated schema, triggers included, and never collide.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import TestConfig
from trial import create_app
from trial.extensions import db

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
RUN_ID = uuid.uuid4().hex[:8]


def make_config(database_url: str, instance_path, **overrides) -> type[TestConfig]:
    attrs = {"SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_PATH": str(instance_path)}
    attrs.update(overrides)
    return type("PerTestConfig", (TestConfig,), attrs)


def _migrate(database_url: str, instance_path) -> None:
    app = create_app(make_config(database_url, instance_path))
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        db.engine.dispose()


def _admin_engine():
    url = make_url(TEST_DATABASE_URL)
    return create_engine(url, isolation_level="AUTOCOMMIT")


def pg_url(name: str) -> str:
    return make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def create_pg_database(name: str, template: str | None = None) -> str:
    engine = _admin_engine()
    with engine.connect() as connection:
        clause = f" TEMPLATE {template}" if template else ""
        connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    engine.dispose()
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sqlite-template")
    path = directory / "template.db"
    _migrate(f"sqlite:///{path}", directory / "instance")
    return path


@pytest.fixture(scope="session")
def postgresql_template(tmp_path_factory):
    name = f"trial_tmpl_{RUN_ID}"
    url = create_pg_database(name)
    try:
        _migrate(url, tmp_path_factory.mktemp("pg-template"))
        yield name
    finally:
        drop_pg_database(name)


class ReusablePostgresDatabase:
    """One migrated PostgreSQL database per test session, emptied between tests.

    Creating and dropping a database per test costs about a second on PostgreSQL (both force a
    checkpoint); truncating every table costs a few milliseconds. The reset empties all tables
    (with triggers off for that transaction only, so the append-only audit table can be
    emptied) and puts back the rows the migrations seeded. A test that changed the schema
    itself (dropped a trigger to play the attacker, downgraded a migration) is detected by a
    fingerprint of the schema, and the database is then re-created from the template, so no
    test can leak a weakened schema into the next.
    """

    def __init__(self, template: str, suffix: str = "work"):
        self.template = template
        self.name = f"trial_w_{RUN_ID}_{suffix}"
        self.url = create_pg_database(self.name, template=template)
        self.engine = create_engine(self.url, poolclass=NullPool)
        self.fingerprint = self._fingerprint()
        self.tables, self.seed = self._snapshot()

    def _fingerprint(self) -> tuple:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("""
                SELECT 'column', table_name || '.' || column_name || ':' || data_type || ':'
                       || is_nullable || ':' || coalesce(column_default, '')
                  FROM information_schema.columns WHERE table_schema = 'public'
                UNION ALL
                SELECT 'trigger', tgrelid::regclass::text || '.' || tgname || ':' || tgenabled::text
                  FROM pg_trigger WHERE NOT tgisinternal
                UNION ALL
                SELECT 'index', indexname || ':' || indexdef FROM pg_indexes
                 WHERE schemaname = 'public'
                UNION ALL
                SELECT 'constraint', conrelid::regclass::text || '.' || conname
                  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                UNION ALL
                SELECT 'version', version_num FROM alembic_version
                ORDER BY 1, 2""")
            ).all()
        return tuple(rows)

    def _snapshot(self):
        metadata = MetaData()
        metadata.reflect(self.engine)
        tables = [t for t in metadata.sorted_tables if t.name != "alembic_version"]
        seed = {}
        with self.engine.connect() as connection:
            for table in tables:
                rows = [dict(row._mapping) for row in connection.execute(table.select())]
                if rows:
                    seed[table] = rows
        return tables, seed

    def _terminate_other_connections(self) -> None:
        engine = _admin_engine()
        with engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            )
        engine.dispose()

    def reset(self) -> None:
        self._terminate_other_connections()
        if self._fingerprint() != self.fingerprint:
            self.engine.dispose()
            drop_pg_database(self.name)
            create_pg_database(self.name, template=self.template)
            return
        names = ", ".join(f'"{table.name}"' for table in self.tables)
        with self.engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            for table, rows in self.seed.items():
                connection.execute(table.insert(), rows)

    def close(self) -> None:
        self.engine.dispose()
        drop_pg_database(self.name)


@pytest.fixture(scope="session")
def postgresql_work_database(postgresql_template):
    work = ReusablePostgresDatabase(postgresql_template)
    try:
        yield work
    finally:
        work.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, request, tmp_path):
    """A freshly migrated, empty database of the test's own."""
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "trial.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    work = request.getfixturevalue("postgresql_work_database")
    try:
        yield work.url
    finally:
        work.reset()


@pytest.fixture
def config_overrides() -> dict:
    """Override in a test module to change settings for the ``app`` fixture."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, config_overrides):
    application = create_app(make_config(database_url, tmp_path / "instance", **config_overrides))
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- factories: fixtures that return callables ------------------------------------------


@pytest.fixture
def make_site(app):
    from trial.cli_support import system_actor
    from trial.sites.services import create_site, get_site_by_code

    def factory(code="S01", name=None, timezone="UTC", planned_enrollment=None):
        existing = get_site_by_code(code)
        if existing is not None:
            return existing
        site = create_site(
            system_actor(),
            code=code,
            name=name or f"Site {code}",
            timezone=timezone,
            planned_enrollment=planned_enrollment,
        )
        db.session.commit()
        return site

    return factory


@pytest.fixture
def make_user(app, make_site):
    """Create a user and return ``(user, token)``; site roles default to S01."""
    from trial.auth import services, tokens
    from trial.auth.roles import MULTI_SITE_ROLES, SINGLE_SITE_ROLES
    from trial.cli_support import system_actor

    counter = {"n": 0}

    def factory(
        role="coordinator", sites=None, username=None, password=None, ttl=timedelta(hours=1)
    ):
        counter["n"] += 1
        if sites is None:
            sites = ["S01"] if role in SINGLE_SITE_ROLES | MULTI_SITE_ROLES else []
        for code in sites:
            make_site(code)
        user = services.create_user(
            system_actor(),
            username=username or f"{role}-{counter['n']}",
            role=role,
            site_codes=sites,
            password=password,
        )
        token, _ = tokens.issue_token(system_actor(), user, label="test", ttl=ttl)
        db.session.commit()
        return user, token

    return factory


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_participant(client, make_user):
    """Register a participant through the API as a coordinator of its site."""
    coordinators: dict[str, str] = {}

    def factory(site="S01", sex="F", year_of_birth=1980, consent_date="2026-01-15"):
        if site not in coordinators:
            coordinators[site] = make_user("coordinator", sites=[site])[1]
        response = client.post(
            "/api/v1/participants",
            headers=bearer(coordinators[site]),
            json={
                "site": site,
                "sex": sex,
                "year_of_birth": year_of_birth,
                "consent_date": consent_date,
            },
        )
        assert response.status_code == 201, response.json
        return response.json

    return factory


def make_ready_for_randomization(client, headers: dict, participant_id: str) -> None:
    """What randomization requires of a participant, entered through the API as site staff
    would: a completed screening visit (yesterday, or on consent if that is later) with its
    baseline calendar (the day before it), and every eligibility criterion answered as the
    protocol requires. Does nothing for a participant already eligible, so a randomize
    helper can call it before every attempt."""
    from datetime import date

    from tests.capture_helpers import eligible_answers

    shown = client.get(f"/api/v1/participants/{participant_id}/eligibility", headers=headers)
    if shown.status_code == 200 and shown.json["eligible"] is True:
        return
    participant = client.get(f"/api/v1/participants/{participant_id}", headers=headers)
    assert participant.status_code == 200, participant.json
    consent = date.fromisoformat(participant.json["consent_date"])
    screening = max(date.today() - timedelta(days=1), consent)
    visit = client.post(
        f"/api/v1/participants/{participant_id}/visits",
        headers=headers,
        json={
            "visit_code": "screening",
            "visit_date": screening.isoformat(),
            "drinking": [
                {"date": (screening - timedelta(days=1)).isoformat(), "standard_drinks": 6}
            ],
        },
    )
    assert visit.status_code == 201, visit.json
    answers = client.post(
        f"/api/v1/participants/{participant_id}/eligibility",
        headers=headers,
        json={"answers": eligible_answers()},
    )
    assert answers.status_code == 201, answers.json


def make_ready_in_process(actor, participant, screening=None) -> None:
    """``make_ready_for_randomization`` through the services, in the test's own process (for
    tests that load many participants before starting a server, and for the benchmarks): a
    screening visit on ``screening`` (default: yesterday, or the consent date if later) with
    a one-day baseline calendar, and every criterion answered as the protocol requires. The
    caller commits."""
    from datetime import date

    from tests.capture_helpers import eligible_answers
    from trial.conduct.eligibility import record_answers
    from trial.visits.services import record_visit

    if screening is None:
        screening = max(date.today() - timedelta(days=1), participant.consent_date)
    record_visit(
        actor,
        participant,
        {
            "visit_code": "screening",
            "visit_date": screening,
            "status": "completed",
            "drinking": [{"day": screening - timedelta(days=1), "standard_drinks": 6}],
        },
    )
    record_answers(actor, participant, eligible_answers())


def approve_for_code_break(user, password: str):
    """Let an investigator break codes as the real procedure does (trial/auth/approval.py):
    the owner sets their own password, then an unblinded statistician approves the account.
    The approval check itself stays on; this only gives the approval a real account needs.
    """
    from trial.auth import approval, passwords, services
    from trial.cli_support import system_actor

    approver = services.get_user_by_username("code-break.approver")
    if approver is None:
        approver = services.create_user(
            system_actor(), username="code-break.approver", role="unblinded_statistician"
        )
    passwords.set_password(user, user, password)
    given = approval.approve_code_break(approver, user, reason="identity confirmed (test)")
    db.session.commit()
    return given


@pytest.fixture
def approve_code_break(app):
    """``approve_for_code_break`` as a fixture: ``approve_code_break(user, password)``."""
    return approve_for_code_break
