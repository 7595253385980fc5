"""The files of the blinded bundle: each declares its columns (a variable with the function
that gives its values) and how its rows are read at the cut-off.

Rows are ordered by participant id (site code and registration number) and then by a
clinical key (schedule order, date, term): never by anything that follows the
randomization list. No file carries an arm, a dose in mg, a kit-to-arm link or a lot.
"""

from __future__ import annotations

from exports.tables.declaration import Column, Group, Table
from exports.tables.drinking_outcomes import outcomes_table
from exports.tables.participants import participants_table
from exports.tables.records import (
    adverse_events_table,
    calendar_table,
    deviations_table,
    study_drug_table,
)
from exports.tables.visits import (
    blinding_table,
    ciwa_table,
    labs_table,
    ocds_table,
    visits_table,
    vitals_table,
)

__all__ = ["Column", "Group", "Table", "tables"]


def tables(protocol) -> tuple[Table, ...]:
    """The bundle's files, in the order they are written."""
    return (
        participants_table(),
        visits_table(),
        calendar_table(protocol),
        ocds_table(),
        ciwa_table(),
        vitals_table(),
        labs_table(),
        blinding_table(),
        study_drug_table(),
        adverse_events_table(),
        deviations_table(),
        outcomes_table(protocol),
    )
