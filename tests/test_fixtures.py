"""The test database fixtures themselves: a reused PostgreSQL database must come back clean."""

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import TEST_DATABASE_URL, ReusablePostgresDatabase

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL")

TRIGGER_COUNT = (
    "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = 'audit_events'::regclass"
)


def test_reset_empties_tables_and_restores_seed_rows(postgresql_template):
    work = ReusablePostgresDatabase(postgresql_template, suffix="selftest1")
    engine = create_engine(work.url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO sites (code, name, timezone, planned_enrollment, "
                    "participant_counter, created_at) VALUES ('S01', 'x', 'UTC', 1, 0, now())"
                )
            )
            connection.execute(text("UPDATE audit_chain_head SET last_seq = 5"))
        engine.dispose()
        work.reset()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM sites")).scalar() == 0
            assert connection.execute(text("SELECT last_seq FROM audit_chain_head")).scalar() == 0
            assert connection.execute(text(TRIGGER_COUNT)).scalar() == 2
    finally:
        engine.dispose()
        work.close()


def test_reset_rebuilds_a_database_whose_triggers_were_dropped(postgresql_template):
    """A test playing the attacker must not leave the next test without triggers."""
    work = ReusablePostgresDatabase(postgresql_template, suffix="selftest2")
    engine = create_engine(work.url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER audit_events_no_update_delete ON audit_events"))
            assert connection.execute(text(TRIGGER_COUNT)).scalar() == 1
        engine.dispose()
        assert work._fingerprint() != work.fingerprint  # the weakened schema is noticed
        work.reset()
        assert work._fingerprint() == work.fingerprint
        with engine.connect() as connection:
            assert connection.execute(text(TRIGGER_COUNT)).scalar() == 2
    finally:
        engine.dispose()
        work.close()
