"""The bundle's files as declared in exports/tables: each column a variable with the function
that gives its values, and the outcome file a step of its own (not a side effect of the
calendar's pass). Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime

from exports import formats
from exports.context import build_context
from exports.snapshot import read_snapshot
from exports.tables import Column, tables
from exports.tables.drinking_outcomes import outcomes_table
from tests.test_exports_bundle import export, now_cutoff
from trial.protocol import current_protocol


def test_every_column_declares_its_variable_and_how_its_values_are_obtained(app):
    for table in tables(current_protocol()):
        names = [column.variable.name for column in table.columns]
        assert len(names) == len(set(names)), table.name
        for column in table.columns:
            assert isinstance(column, Column)
            assert callable(column.values), (table.name, column.variable.name)


def outcome_file_alone(cutoff: str) -> bytes:
    """The outcome file written with no other file of the bundle read before it."""
    protocol = current_protocol()
    table = outcomes_table(protocol)
    with read_snapshot(datetime.fromisoformat(cutoff)) as cut:
        ctx = build_context(protocol, cut)
        sink = io.BytesIO()
        formats.write_csv(sink, table.variables, table.rows(ctx))
    return sink.getvalue()


def test_the_outcome_file_is_a_step_of_its_own(app, runner, tmp_path):
    result = runner.invoke(args=["trial", "demo", "--participants", "12", "--seed", "5"])
    assert result.exit_code == 0, result.output
    cutoff = now_cutoff()
    bundle = export(runner, tmp_path, "--cutoff", cutoff)
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        in_bundle = archive.read("drinking_outcomes.csv")
    alone = outcome_file_alone(cutoff)
    assert alone == in_bundle
    assert alone.count(b"\r\n") > 12  # not vacuous: periods of every participant
