"""The record files of a CSV bundle, written by helper processes a range of participants each.

Most of a bundle's time is Python turning rows into CSV, which runs on one core however many
the machine has. So the participants are cut into consecutive ranges of their id (as the
database orders them), and one helper process per range writes that range of every record
file (visits, calendar, forms, adverse events, deviations) as CSV without a header into a
temporary directory. The request's own process writes each entry's header and copies the
ranges into the ZIP in order; a record file is ordered by participant id first, so the ranges
put end to end are byte for byte the file one process writes.

Each helper is a fork of the request's process (the application is loaded already, so it
starts at once), made for one bundle after that process has closed every database connection:
SQLite forbids carrying an open connection across a fork, so each helper, like the parent
afterwards, opens its own. A helper lives and dies with its bundle: the process serving the
request keeps nothing between requests. Sent after the audit barrier, a helper takes its own
read snapshot and rebuilds the cut, which gives the same rows whenever the snapshot is taken
(the current rows rewound through the audit trail); every helper reports the last audit event
of its cut, and a helper that saw another one fails the export instead of mixing two cuts.

A helper reads its participants' visits, study drug and dispositions, and hands the facts
they give (screening and first dose dates, disposition) to the request's process, which
writes the participant file from them instead of reading every participant's records again.
It also writes its range of the outcome file (in the same order of participant ids as the
record files), computed from its participants' calendars.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from exports import formats
from exports.context import (
    Context,
    ParticipantRange,
    adopt_record_facts,
    build_context,
    record_facts,
)
from exports.snapshot import read_snapshot
from exports.tables import Table, tables
from trial.extensions import db
from trial.participants.models import Participant
from trial.protocol import current_protocol

log = logging.getLogger(__name__)

# A helper resets the signals its parent (a gunicorn worker) handles to their defaults, so
# stopping it stops it.
INHERITED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


class ExportHelperFailed(RuntimeError):
    """A helper process failed or saw another cut; the export is abandoned."""


def helper_ranges(fmt: str) -> list[ParticipantRange]:
    """The participant range of each helper for this bundle; none: write it in this process.

    CSV only (an XPT or Parquet file is one encoder's output, not rows end to end), at
    least two helpers, and each with EXPORT_HELPER_MIN_PARTICIPANTS at least: below that, a
    fork and a cut of its own cost a helper more than it saves. The ranges hold about as
    many participants each, in the database's order of their ids."""
    config = current_app.config
    wanted = int(config.get("EXPORT_HELPERS", 0))
    if fmt != "csv" or wanted < 2:
        return []
    total = db.session.scalar(select(func.count()).select_from(Participant)) or 0
    count = min(wanted, total // max(int(config.get("EXPORT_HELPER_MIN_PARTICIPANTS", 1)), 1))
    if count < 2:
        return []
    ids = select(Participant.participant_id).order_by(Participant.participant_id)
    firsts = [db.session.scalar(ids.offset(total * k // count).limit(1)) for k in range(1, count)]
    bounds = [None, *firsts, None]
    return [ParticipantRange(bounds[k], bounds[k + 1]) for k in range(count)]


@dataclass
class _Helper:
    process: multiprocessing.process.BaseProcess
    pipe: multiprocessing.connection.Connection
    number: int

    def receive(self) -> tuple:
        """The helper's next message, waiting for it; a failure is raised here."""
        try:
            message = self.pipe.recv()
        except EOFError:  # it exited without a word: the pipe's only writer is closed
            self.process.join(timeout=5)
            raise ExportHelperFailed(
                f"export helper {self.number} stopped (exit code {self.process.exitcode})"
            ) from None
        if message[0] == "failed":
            raise ExportHelperFailed(f"export helper {self.number} failed:\n{message[1]}")
        return message


class RecordHelpers:
    """The running helpers of one bundle, in range order."""

    def __init__(self, helpers: list[_Helper], directory: Path):
        self._helpers = helpers
        self._directory = directory

    def check_cut(self, last_seq: int) -> None:
        """Every helper rebuilt the cut that ends at the same audit event as ours."""
        for helper in self._helpers:
            _, theirs = helper.receive()
            if theirs != last_seq:
                raise ExportHelperFailed(
                    f"export helper {helper.number} cut the trail at event {theirs}, not {last_seq}"
                )

    def adopt_record_facts(self, ctx: Context) -> None:
        """Set on ``ctx``'s participants the record facts each helper read for its range."""
        for helper in self._helpers:
            kind, found = helper.receive()
            if kind != "facts":
                raise ExportHelperFailed(f"export helper {helper.number} sent {kind}")
            adopt_record_facts(ctx, found)

    def copy(self, table: Table, sink) -> int:
        """Write every range of ``table`` to ``sink`` in order (after its header); the rows."""
        rows = 0
        for helper in self._helpers:
            kind, name, count = helper.receive()
            if (kind, name) != ("part", table.name):
                raise ExportHelperFailed(f"export helper {helper.number} sent {kind} {name}")
            path = _part_path(self._directory, helper.number, name)
            with path.open("rb") as part:
                shutil.copyfileobj(part, sink, 1 << 20)
            path.unlink()
            rows += count
        return rows


def _part_path(directory: Path, number: int, name: str) -> Path:
    return directory / f"{number}-{name}.csv"


def _fork_helpers(app, count: int) -> list[_Helper] | None:
    """``count`` new helpers, forked after this process has closed its database connections
    (none may cross a fork); None if a connection is in use (another thread's request)."""
    db.session.commit()  # hands the session's connection back to the pool ...
    engine = db.engine
    if engine.pool.checkedout():
        log.warning("a database connection is in use: the bundle is written in one process")
        return None
    engine.dispose()  # ... which closes them all: no connection crosses the fork
    context = multiprocessing.get_context("fork")
    helpers: list[_Helper] = []
    for number in range(1, count + 1):
        ours, theirs = context.Pipe()
        # The helper closes its copies of our ends of the earlier pipes, so that when this
        # process ends (however it ends) each helper reads the end of its pipe and exits.
        inherited = [ours, *(helper.pipe for helper in helpers)]
        process = context.Process(
            target=_helper_main,
            args=(app, theirs, number, inherited),
            name=f"export-helper-{number}",
            daemon=True,
        )
        process.start()
        theirs.close()
        helpers.append(_Helper(process, ours, number))
    return helpers


def _end_helpers(helpers: list[_Helper]) -> None:
    """Close every pipe and wait for each helper to exit (killing one that does not)."""
    for helper in helpers:
        helper.pipe.close()
    for helper in helpers:
        helper.process.join(timeout=5)
        if helper.process.is_alive():
            helper.process.kill()
            helper.process.join()


@contextmanager
def record_helpers(fmt: str, cutoff: datetime, selected: list[Table]) -> Iterator:
    """Fork this bundle's helpers and give them their ranges (or yield None when it is
    written in this process); they exit when the bundle is written or has failed.

    Call it after the audit barrier and before this process opens its own snapshot."""
    names = [table.name for table in selected if table.splits]
    ranges = helper_ranges(fmt) if names else []
    if not ranges:
        yield None
        return
    helpers = _fork_helpers(current_app._get_current_object(), len(ranges))
    if helpers is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bundle-parts-") as scratch:
        # Every helper has exited before its scratch directory is removed: when one fails,
        # the others may still be writing parts, and removing the directory under them
        # raced them ("Directory not empty") and hid the failure's own error.
        try:
            directory = Path(scratch)
            for helper, part in zip(helpers, ranges, strict=True):
                helper.pipe.send(("bundle", cutoff, part, names, directory))
            yield RecordHelpers(helpers, directory)
            for helper in helpers:
                kind, *_ = helper.receive()
                if kind != "done":
                    raise ExportHelperFailed(f"export helper {helper.number} sent {kind}")
        finally:
            _end_helpers(helpers)


def _helper_main(app, pipe, number, inherited) -> None:
    """A helper's whole life: one bundle's ranges, then exit without cleanup (what it
    inherited belongs to its parent)."""
    for number_of_signal in INHERITED_SIGNALS:
        signal.signal(number_of_signal, signal.SIG_DFL)
    for connection in inherited:
        connection.close()
    with app.app_context():
        db.engine.dispose(close=False)  # a pool of its own (the parent's was empty)
    try:
        _, cutoff, part, names, directory = pipe.recv()
    except EOFError:  # the parent has gone
        os._exit(0)
    try:
        _write_ranges(app, pipe, number, cutoff, part, names, directory)
        pipe.send(("done",))
    except BaseException:
        pipe.send(("failed", traceback.format_exc()))
        pipe.close()
        os._exit(1)
    pipe.close()
    os._exit(0)


def _write_ranges(app, pipe, number, cutoff, part, names, directory) -> None:
    """One bundle's range of each record file, with messages to the parent as they go."""
    with app.app_context(), read_snapshot(cutoff) as cut:  # a session of its own
        pipe.send(("cut", cut.last_seq))
        protocol = current_protocol()
        ctx = build_context(protocol, cut, part)
        pipe.send(("facts", record_facts(ctx)))
        for table in tables(protocol):
            if table.name not in names:
                continue
            with _part_path(directory, number, table.name).open("wb") as target:
                count = formats.write_csv(target, table.variables, table.rows(ctx), header=False)
            pipe.send(("part", table.name, count))
