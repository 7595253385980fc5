"""The migrations build exactly the schema the models describe, on both databases.

The ``app`` fixture's database is built by the real migrations, so comparing it with the
models' metadata is what ``flask db migrate`` would do: an empty diff means no migration is
missing. The command line is exercised too, in a subprocess, as an operator would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, create_engine, inspect, text

from config import PROJECT_ROOT
from tests.conftest import create_pg_database, drop_pg_database
from trial.audit.chain import GENESIS_HASH
from trial.extensions import db

FOUNDATION_TABLES = {
    "audit_chain_head",
    "audit_events",
    "sites",
    "users",
    "api_tokens",
    "participants",
    "user_sites",
}
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def schema_diff(connection, metadata) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


def test_migrated_schema_matches_the_models(app):
    with db.engine.connect() as connection:
        diff = schema_diff(connection, db.metadata)
        connection.rollback()
    assert diff == [], f"models and migrations disagree; add a migration for: {diff}"


def test_schema_comparison_would_notice_a_missing_migration(app):
    """Negative control: a column only the models know about shows up in the diff."""
    metadata = MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["participants"].append_column(Column("shoe_size", Integer))
    with db.engine.connect() as connection:
        diff = schema_diff(connection, metadata)
        connection.rollback()
    assert [(op[0], op[2], op[3].name) for op in diff] == [
        ("add_column", "participants", "shoe_size")
    ]


def test_every_model_table_is_created_by_the_migrations(app):
    tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables
    assert FOUNDATION_TABLES <= tables


def model_checks(metadata) -> dict[tuple[str, str], str]:
    """Each CHECK constraint of the models, by (table, name as created), with its text."""
    checks = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, CheckConstraint):
                name = str(constraint.name)
                if not name.startswith("ck_"):
                    name = f"ck_{table.name}_{name}"
                checks[(table.name, name)] = str(constraint.sqltext)
    return checks


def migrated_checks(engine, tables) -> dict[tuple[str, str], str]:
    inspector = inspect(engine)
    return {
        (table, check["name"]): check["sqltext"]
        for table in tables
        for check in inspector.get_check_constraints(table)
    }


def check_differences(migrated: dict, models: dict) -> list:
    def same(text: str) -> str:
        return " ".join(text.split())

    return sorted(
        (key, migrated.get(key), models.get(key))
        for key in migrated.keys() | models.keys()
        if same(migrated.get(key) or "") != same(models.get(key) or "")
    )


def test_check_constraints_match_the_models(app, backend):
    """Alembic's comparison leaves CHECK constraints out; this compares them (the drinks
    guard of migration 0011 with ``trial.protocol.DRINKS_PER_DAY_CEILING``, the vitals and
    score ranges with ``trial.forms.models``). SQLite keeps a CHECK's text as written;
    PostgreSQL rewrites it, so there tests/test_protocol_rules.py checks the drinks guard by
    what the database refuses."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL stores a CHECK's text rewritten")
    models = model_checks(db.metadata)
    assert ("drinking_days", "ck_drinking_days_drinks_range") in models
    assert check_differences(migrated_checks(db.engine, db.metadata.tables), models) == []


def test_control_the_check_comparison_notices_a_changed_range(app, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL stores a CHECK's text rewritten")
    models = model_checks(db.metadata)
    key = ("drinking_days", "ck_drinking_days_drinks_range")
    models[key] = models[key].replace("<= 100", "<= 60")  # the limit before migration 0011
    differences = check_differences(migrated_checks(db.engine, db.metadata.tables), models)
    assert [difference[0] for difference in differences] == [key]


def test_migrations_have_a_single_head():
    script = ScriptDirectory.from_config(_alembic_config())
    assert len(script.get_heads()) == 1


def test_audit_triggers_are_installed(app, backend):
    with db.engine.connect() as connection:
        if backend == "sqlite":
            names = set(
                connection.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                    " AND tbl_name = 'audit_events'"
                ).scalars()
            )
            assert names == {"audit_events_no_update", "audit_events_no_delete"}
        else:
            names = set(
                connection.exec_driver_sql(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass"
                    " AND NOT tgisinternal"
                ).scalars()
            )
            assert names == {"audit_events_no_update_delete", "audit_events_no_truncate"}
        connection.rollback()


def test_chain_head_starts_at_genesis(app):
    row = db.session.execute(text("SELECT id, last_seq, last_hash FROM audit_chain_head")).all()
    assert [tuple(r) for r in row] == [(1, 0, GENESIS_HASH)]


# --- the command line, in a subprocess --------------------------------------------------


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def flask_db(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "PROTOCOL_FILE",
            "SQLITE_SYNCHRONOUS",
            "ALLOW_UNSAFE_DURABILITY",
            "FLASK_APP",
        }
    }
    env.update(DATABASE_URL=database_url, TRIAL_INSTANCE_DIR=str(tmp_path))
    flask = Path(sys.executable).with_name("flask")
    return subprocess.run(
        [str(flask), "--app", "wsgi", "db", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_ok(tmp_path, database_url, *args) -> str:
    result = flask_db(tmp_path, database_url, *args)
    assert result.returncode == 0, (
        f"flask db {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout + result.stderr


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def scalar(database_url: str, sql: str):
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


@pytest.fixture
def empty_database(backend, tmp_path):
    """A database with nothing in it, not even the migrations the other fixtures apply."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    name = f"trial_cli_{uuid.uuid4().hex[:12]}"
    url = create_pg_database(name)
    try:
        yield url
    finally:
        drop_pg_database(name)


def test_cli_upgrade_check_downgrade_and_upgrade_again(empty_database, tmp_path):
    url = empty_database
    run_ok(tmp_path, url, "upgrade")
    assert FOUNDATION_TABLES | {"alembic_version"} <= table_names(url)
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert scalar(url, "SELECT version_num FROM alembic_version") == head

    # db check: autogenerate against the freshly built database finds nothing to do.
    run_ok(tmp_path, url, "check")

    run_ok(tmp_path, url, "downgrade", "base")
    assert table_names(url) <= {"alembic_version"}

    run_ok(tmp_path, url, "upgrade")
    assert FOUNDATION_TABLES <= table_names(url)
    assert scalar(url, "SELECT version_num FROM alembic_version") == head
    assert scalar(url, "SELECT last_hash FROM audit_chain_head WHERE last_seq = 0") == (
        GENESIS_HASH
    )


def test_cli_upgrade_on_sqlite_creates_the_default_instance_file(tmp_path):
    """Without DATABASE_URL the database is a file under the instance directory."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["TRIAL_INSTANCE_DIR"] = str(tmp_path / "instance")
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(
        [str(flask), "--app", "wsgi", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    database = tmp_path / "instance" / "trial.db"
    assert database.exists()
    assert FOUNDATION_TABLES <= table_names(f"sqlite:///{database}")
