"""The bundle's README.txt: what one row of each file is, its key, and how the files join.

Written from the tables' declarations (exports/tables: each file's row, key, joins and notes;
exports/variables: how the format stores each type, the short-name and label rules), so it
cannot drift from the files beside it. It depends on the cut-off, the options and those
declarations only (never on an arm), and repeats byte for byte as the rest of the bundle.
"""

from __future__ import annotations

import textwrap

from exports.tables import Table
from exports.variables import LABEL_RULE, SHORT_NAME_RULE, STORAGE, short_names, xpt_label

NAME = "README.txt"
WIDTH = 78
BLINDED = (
    "The bundle is blinded: no file holds an arm, a kit-to-arm link, a dose in milligrams, a lot "
    "number or a code-break outcome. Rows are ordered by participant_id, then visit schedule, "
    "date or term, never by the randomization list."
)


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _field(label: str, text: str) -> list[str]:
    head = f"  {label + ':':<11}"
    return _wrap(text, " " * len(head), head)


def joins(written: list[Table]) -> list[tuple[Table, Table, str]]:
    """Each (file, parent, cardinality) a file's ``joins`` declares, on the parent's key."""
    by_name = {table.name: table for table in written}
    found = []
    for table in written:
        names = {v.name for v in table.variables}
        for parent_name in table.joins:
            parent = by_name[parent_name]
            if not parent.key or not set(parent.key) <= names:
                raise ValueError(f"{table.name} cannot join {parent_name} on its key")
            one = table.key and set(table.key) == set(parent.key)
            found.append((table, parent, "one to one" if one else "many to one"))
    return found


def bundle_readme(
    *,
    trial: str,
    cutoff: str,
    fmt: str,
    extension: str,
    written: list[Table],
    dummy_seed: int | None,
    dummy_column: str,
    other_files: list[str],
) -> str:
    """The README's text (CRLF line ends, as the bundle's other text files)."""
    lines = [
        "BLINDED DATASET BUNDLE - README",
        "",
        f"Trial {trial}. Data cut-off {cutoff}. Format: {fmt}.",
        "",
        *_wrap(BLINDED),
    ]
    if dummy_seed is not None:
        lines += [
            "",
            *_wrap(
                f"DUMMY ARMS: participants.{extension} has a column {dummy_column} drawn at "
                f"random from the declared seed {dummy_seed}. They are NOT the real "
                "allocation; use them only to write and test analysis code."
            ),
        ]
    xpt = fmt == "xpt"
    lines += ["", "FILES", "-----"]
    for table in written:
        shorts = short_names([v.name for v in table.variables])

        def named(columns, shorts=shorts) -> str:
            if xpt:
                return ", ".join(f"{c} ({shorts[c]})" for c in columns)
            return ", ".join(columns)

        title = f"{table.name}.{extension}"
        if xpt:
            title += f" (SAS name {short_names([table.name])[table.name]})"
        lines += ["", *_wrap(f"{title}: {table.label}")]
        if xpt and xpt_label(table.label) != table.label:
            lines += _field("XPT label", xpt_label(table.label))
        lines += _field("One row", table.row)
        if table.key:
            lines += _field("Key", f"{named(table.key)}: one row per value")
        else:
            lines += _field("Key", table.no_key)
        parents = [(parent, how) for child, parent, how in joins(written) if child is table]
        joined = "; ".join(
            f"{parent.name} on {named(parent.key)} ({how})" for parent, how in parents
        )
        lines += _field("Joins", joined or "(the other files join it)")
        for note in table.notes:
            lines += _field("Note", note)
        lines += _field("Columns", f"{len(table.columns)}, described in dictionary.csv")
    lines += ["", "HOW THE FILES JOIN", "------------------", ""]
    lines += _wrap(
        "Every file holds participant_id and joins participants on it. A file joins its parent "
        "on the parent's key; an empty join column matches no row."
    )
    lines.append("")
    for table, parent, how in joins(written):
        lines += _wrap(
            f"{table.name} -> {parent.name} on {', '.join(parent.key)} ({how})", "    ", "  "
        )
    lines += ["", "VALUES", "------", ""]
    used = {v.type for table in written for v in table.variables}
    for kind, text in STORAGE[fmt].items():
        if kind in used:
            lines += _wrap(text, " " * 12, f"  {kind:<10}")
    # Always: dictionary.csv gives every variable's short name, whatever the format.
    lines += ["", "SAS NAMES AND LABELS (XPT; short_name in dictionary.csv)"]
    lines += ["-" * len(lines[-1]), ""]
    lines += _wrap(SHORT_NAME_RULE)
    lines.append("")
    lines += _wrap(LABEL_RULE)
    lines += ["", "OTHER FILES", "-----------", ""]
    described = {
        "dictionary.csv": (
            "every variable of every file: file, variable, SAS short name, label, type, unit, "
            "allowed values, origin (entered, derived, assigned) and derivation"
        ),
        NAME: "this file",
        "manifest.json": (
            "cut-off, last audit event included, software version, format, and every other "
            "file's row count and SHA-256 (this file's among them)"
        ),
    }
    for name in [*other_files, NAME, "manifest.json"]:
        text = described.get(name, "says the dummy arms are NOT the real allocation")
        lines += _wrap(f"{name}: {text}", "    ", "  ")
    return "\r\n".join(lines) + "\r\n"
