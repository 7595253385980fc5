"""Import a randomization list from a CSV file, refused whole naming every bad row."""

from __future__ import annotations

import csv
import io
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from randomization.generator import Slot, block_contents
from randomization.lists.generation import (
    require_unblinded_statistician,
    store_list,
)
from randomization.models import RandomizationList, RandomizationSlot
from randomization.strata import all_strata
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.protocol import current_protocol
from trial.sites.models import Site


@dataclass
class _ImportProblems:
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, message: str) -> None:
        self.errors.setdefault(where, []).append(message)


def _existing_max_sequences() -> dict[str, int]:
    rows = db.session.execute(
        select(RandomizationSlot.stratum, func.max(RandomizationSlot.sequence)).group_by(
            RandomizationSlot.stratum
        )
    )
    return {stratum: top for stratum, top in rows}


def _check_blocks(rows, ratio, problems: _ImportProblems) -> None:
    by_block: dict[tuple[str, int], list[int]] = defaultdict(list)
    for row in rows:
        if row["block"] is not None:
            by_block[(row["stratum"], row["block"])].append(row["arm"])
    for (stratum, block), arms in sorted(by_block.items()):
        size = len(arms)
        if size % sum(ratio) or sorted(arms) != sorted(block_contents(size, ratio)):
            problems.add(
                f"block {block} of {stratum}",
                f"is unbalanced for the ratio {':'.join(map(str, ratio))}.",
            )


def _read_csv(text: str) -> tuple[list[str], list[dict]]:
    """Read the whole file first, so malformed CSV is refused naming its line, not a crash."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return reader.fieldnames or [], list(reader)
    except csv.Error as exc:
        raise ValidationFailed(
            "The list file was refused; nothing was loaded.",
            {"file": [f"not readable as CSV after line {reader.line_num} ({exc})"]},
        ) from None


def parse_import(text: str, *, append: bool) -> list[dict]:
    """Parse and check a list file; raise naming every bad line, write nothing."""
    protocol = current_protocol()
    problems = _ImportProblems()
    fieldnames, records = _read_csv(text)
    header = [name.strip().lower() for name in fieldnames]
    missing = {"stratum", "sequence", "arm"} - set(header)
    if missing:
        raise ValidationFailed(
            "The list file lacks required columns.",
            {"header": [f"missing column(s): {', '.join(sorted(missing))}"]},
        )
    # Exactly the keys allocation looks up ("site=S01|sex=F"): a reordered or repeated factor
    # would be slots no participant can reach (and an over-long key a database error).
    valid_strata = set(all_strata(protocol, list(db.session.scalars(select(Site.code)))))
    kit_width = RandomizationSlot.kit_number.type.length
    rows, seen, kits = [], set(), set()
    for line_number, raw in enumerate(records, start=2):
        where = f"line {line_number}"
        if None in raw:  # csv.DictReader puts fields beyond the header under None, as a list
            problems.add(where, "has more fields than the header")
            continue
        raw = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        stratum = raw.get("stratum", "")
        if stratum not in valid_strata:
            problems.add(where, f"unknown stratum {stratum!r}")
        try:
            sequence = int(raw.get("sequence", ""))
            if sequence < 1:
                raise ValueError
        except ValueError:
            problems.add(where, f"sequence {raw.get('sequence')!r} is not a positive integer")
            continue
        if raw.get("arm") not in protocol.arms:
            problems.add(where, f"unknown arm {raw.get('arm')!r}")
            continue
        block = raw.get("block") or None
        # ASCII digits only ("²".isdigit() is true, int("²") fails) and within the column.
        if block is not None and not (
            block.isascii() and block.isdigit() and len(block) <= 10 and int(block) < 2**31
        ):
            problems.add(where, f"block {block!r} is not a positive integer")
            continue
        if (stratum, sequence) in seen:
            problems.add(where, f"sequence {sequence} repeats in stratum {stratum}")
        seen.add((stratum, sequence))
        kit = raw.get("kit") or None
        if kit is not None:
            if not (kit.isascii() and kit.isdigit() and len(kit) <= kit_width) or kit in kits:
                problems.add(where, f"kit {kit!r} is not a unique number")
            kits.add(kit)
        rows.append(
            {
                "stratum": stratum,
                "sequence": sequence,
                "arm": protocol.arms.index(raw["arm"]),
                "block": int(block) if block else None,
                "kit": kit,
            }
        )
    if not rows and not problems.errors:
        problems.add("file", "holds no slots")
    _check_blocks(rows, protocol.ratio, problems)
    existing = _existing_max_sequences()
    if existing and not append:
        raise Conflict("A randomization list is already loaded; import with --append to add to it.")
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_stratum[row["stratum"]].append(row["sequence"])
    for stratum, sequences in sorted(by_stratum.items()):
        start = existing.get(stratum, 0) + 1
        if sorted(sequences) != list(range(start, start + len(sequences))):
            problems.add(f"stratum {stratum}", f"sequences must run without gaps from {start}")
    taken = set(
        db.session.scalars(
            select(RandomizationSlot.kit_number).where(RandomizationSlot.kit_number.in_(kits))
        )
    )
    for kit in sorted(taken):
        problems.add(f"kit {kit}", "is already used in the trial")
    if problems.errors:
        raise ValidationFailed("The list file was refused; nothing was loaded.", problems.errors)
    return rows


def import_list(actor, text: str, *, append: bool = False) -> RandomizationList:
    """Load a list made elsewhere; kits missing from the file are drawn at random."""
    require_unblinded_statistician(actor)
    protocol = current_protocol()
    rows = parse_import(text, append=append)
    used = set(db.session.scalars(select(RandomizationSlot.kit_number)))
    used |= {row["kit"] for row in rows if row["kit"]}
    low, high = 10 ** (protocol.kit_digits - 1), 10**protocol.kit_digits
    block_sizes = Counter(
        (row["stratum"], row["block"]) for row in rows if row["block"] is not None
    )
    slots = []
    for row in rows:
        kit = row["kit"]
        while kit is None or (kit in used and not row["kit"]):
            kit = str(low + secrets.randbelow(high - low))
        used.add(kit)
        size = block_sizes.get((row["stratum"], row["block"]))
        slots.append(Slot(row["stratum"], row["sequence"], row["block"], size, row["arm"], kit))
    parameters = {
        "generator": "imported",
        "arms": list(protocol.arms),
        "ratio": list(protocol.ratio),
        "append": append,
    }
    return store_list(actor, "imported", slots, parameters, None)
