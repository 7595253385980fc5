"""A serious AE's awareness date; expedited reports submitted and acknowledged.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

``adverse_events.awareness_date``: the date the site learned of the event (of a serious one:
that it was serious), required when serious and not before onset (check constraints). The
expedited report's deadline now runs from it (``trial.safety.expedited.due_at``: 00:00 at
the site on the second day after it), not from when the row was typed.

Existing serious AEs had no awareness date. They get the site-local date they were recorded
(``created_at`` in the site's time zone), or their onset if a later correction moved the onset
past that day. Why that date and not the onset: it is the one date known to be true (the site
was aware of the event at the latest when it entered it, and the old 24-hour clock ran from
that moment), while the onset would back-date awareness the site may not have had and
declare reports overdue after the fact. The deadlines of existing reports are recomputed from
it with the new rule, so one rule holds for every report; a deadline can only move later
(at most by a day). These derived values are not audit-trail entries of anyone's; the
migration states them here.

``expedited_reports`` gains ``submitted_at``/``submitted_by_id`` and ``acknowledged_at``/
``acknowledged_by_id``, the status ``acknowledged`` and checks that a submitted or
acknowledged report says when (and, acknowledged, by whom). The check ``due_at > created_at``
goes: an event the site learned of days before entering it is due before it is entered.
Batch mode, because SQLite cannot alter a table's CHECK constraints (the table is copied).
Downgrade drops the new columns and constraints and puts back the older rule with its check
(every report due 24 hours after it was opened); it fails if a report is acknowledged, a
status the older code does not know.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_sites = sa.table("sites", sa.column("id", sa.Integer), sa.column("timezone", sa.String))
_participants = sa.table(
    "participants", sa.column("id", sa.Integer), sa.column("site_id", sa.Integer)
)
_events = sa.table(
    "adverse_events",
    sa.column("id", sa.Integer),
    sa.column("participant_id", sa.Integer),
    sa.column("serious", sa.Boolean),
    sa.column("onset_date", sa.Date),
    sa.column("awareness_date", sa.Date),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_reports = sa.table(
    "expedited_reports",
    sa.column("id", sa.Integer),
    sa.column("adverse_event_id", sa.Integer),
    sa.column("due_at", sa.DateTime(timezone=True)),
)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _due_at(awareness: date, timezone: str, sqlite: bool) -> datetime:
    """``trial.safety.expedited.due_at``, written out: a migration does not import the app."""
    local = datetime.combine(awareness + timedelta(days=2), time(0), tzinfo=ZoneInfo(timezone))
    due = local.astimezone(UTC)
    return due.replace(tzinfo=None) if sqlite else due


def _fill_awareness_dates() -> dict[int, datetime]:
    """Give existing serious AEs their awareness date; return each one's new deadline."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    rows = bind.execute(
        sa.select(_events.c.id, _events.c.onset_date, _events.c.created_at, _sites.c.timezone)
        .join(_participants, _participants.c.id == _events.c.participant_id)
        .join(_sites, _sites.c.id == _participants.c.site_id)
        .where(_events.c.serious.is_(True), _events.c.awareness_date.is_(None))
    ).all()
    dues = {}
    for event_id, onset, created_at, timezone in rows:
        recorded = _aware(created_at).astimezone(ZoneInfo(timezone)).date()
        awareness = max(onset, recorded)
        bind.execute(
            _events.update().where(_events.c.id == event_id).values(awareness_date=awareness)
        )
        dues[event_id] = _due_at(awareness, timezone, sqlite)
    return dues


def _stash_reports_on_sqlite() -> list[dict] | None:
    """Take the expedited reports out while ``adverse_events`` is copied (SQLite only).

    SQLite's batch mode drops the old table, and with foreign keys on (they are, always)
    that is refused while a report references one of its rows; the pragma cannot be turned
    off inside the migration's transaction. So the reports are read, deleted and put back
    unchanged (same ids) once both tables have their new shape. PostgreSQL alters in place.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    table = sa.Table("expedited_reports", sa.MetaData(), autoload_with=bind)
    rows = [dict(row) for row in bind.execute(sa.select(table)).mappings()]
    bind.execute(table.delete())
    return rows


def _restore_reports(rows: list[dict] | None) -> None:
    if not rows:
        return
    bind = op.get_bind()
    table = sa.Table("expedited_reports", sa.MetaData(), autoload_with=bind)
    bind.execute(table.insert(), [{k: v for k, v in r.items() if k in table.c} for r in rows])


def upgrade():
    stashed = _stash_reports_on_sqlite()
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("awareness_date", sa.Date(), nullable=True))
    dues = _fill_awareness_dates()
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "awareness_when_serious", "NOT serious OR awareness_date IS NOT NULL"
        )
        batch_op.create_check_constraint(
            "awareness_after_onset", "awareness_date IS NULL OR awareness_date >= onset_date"
        )
    with op.batch_alter_table("expedited_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("submitted_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_expedited_reports_submitted_by_id_users"),
            "users",
            ["submitted_by_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_expedited_reports_acknowledged_by_id_users"),
            "users",
            ["acknowledged_by_id"],
            ["id"],
        )
        batch_op.drop_constraint(op.f("ck_expedited_reports_due_after_created"), type_="check")
        batch_op.drop_constraint(op.f("ck_expedited_reports_known_status"), type_="check")
        batch_op.create_check_constraint(
            "known_status", "status IN ('open', 'submitted', 'acknowledged', 'withdrawn')"
        )
        batch_op.create_check_constraint(
            "submitted_recorded",
            "status NOT IN ('submitted', 'acknowledged') OR submitted_at IS NOT NULL",
        )
        batch_op.create_check_constraint(
            "acknowledged_recorded",
            "status <> 'acknowledged' OR (acknowledged_at IS NOT NULL"
            " AND acknowledged_by_id IS NOT NULL)",
        )
    _restore_reports(stashed)
    bind = op.get_bind()
    for event_id, due in dues.items():
        bind.execute(
            _reports.update().where(_reports.c.adverse_event_id == event_id).values(due_at=due)
        )


def _restore_entry_deadlines(rows: list[dict] | None) -> None:
    """Put back the older rule (due 24 hours after the report was opened) and its check."""
    bind = op.get_bind()
    if rows is not None:  # SQLite: the stashed rows go back with the older deadline
        for row in rows:
            row["due_at"] = row["created_at"] + timedelta(hours=24)
        return
    created = sa.table(
        "expedited_reports",
        sa.column("id", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    for report_id, created_at in bind.execute(sa.select(created.c.id, created.c.created_at)):
        bind.execute(
            _reports.update()
            .where(_reports.c.id == report_id)
            .values(due_at=created_at + timedelta(hours=24))
        )


def downgrade():
    stashed = _stash_reports_on_sqlite()
    _restore_entry_deadlines(stashed)
    with op.batch_alter_table("expedited_reports", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_expedited_reports_acknowledged_recorded"), type_="check")
        batch_op.drop_constraint(op.f("ck_expedited_reports_submitted_recorded"), type_="check")
        batch_op.drop_constraint(op.f("ck_expedited_reports_known_status"), type_="check")
        batch_op.create_check_constraint(
            "known_status", "status IN ('open', 'submitted', 'withdrawn')"
        )
        batch_op.create_check_constraint("due_after_created", "due_at > created_at")
        batch_op.drop_constraint(
            batch_op.f("fk_expedited_reports_acknowledged_by_id_users"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_expedited_reports_submitted_by_id_users"), type_="foreignkey"
        )
        batch_op.drop_column("acknowledged_by_id")
        batch_op.drop_column("acknowledged_at")
        batch_op.drop_column("submitted_by_id")
        batch_op.drop_column("submitted_at")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_adverse_events_awareness_after_onset"), type_="check")
        batch_op.drop_constraint(op.f("ck_adverse_events_awareness_when_serious"), type_="check")
        batch_op.drop_column("awareness_date")
    _restore_reports(stashed)
