"""Generate, import, verify and summarise the randomization list (unblinded side only)."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from randomization.crypto import decrypt_arm, decrypt_seed, encrypt_arm, encrypt_seed
from randomization.generator import Slot, block_contents, generate_list, list_digest
from randomization.models import RandomizationList, RandomizationSlot
from randomization.predictability import simulate_guess_share
from randomization.release import release_digest
from randomization.strata import all_strata
from trial.audit.services import record_event
from trial.auth.roles import Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, ValidationFailed
from trial.extensions import db
from trial.protocol import SEXES, current_protocol
from trial.sites.models import Site

GENERATOR_NAME = "hmac-sha256-drbg/permuted-blocks/v1"


def require_unblinded_statistician(actor) -> None:
    if getattr(actor, "role", None) != Role.UNBLINDED_STATISTICIAN:
        raise Forbidden("Only the unblinded statistician may do this.")


def list_loaded() -> bool:
    return (db.session.scalar(select(func.count()).select_from(RandomizationList)) or 0) > 0


def _strata_lengths() -> dict[str, int]:
    """Each stratum holds its site's planned enrollment plus the margin, in whole slots.

    The sex split of a site is not known in advance, so each sex stratum can take the whole
    site's planned enrollment: no stratum runs out before its site reaches its target.
    """
    protocol = current_protocol()
    sites = list(db.session.scalars(select(Site).order_by(Site.code)))
    lengths = {}
    for site in sites:
        needed = math.ceil(site.planned_enrollment * (1 + protocol.list_margin))
        for sex in SEXES:
            from randomization.strata import stratum_key

            lengths[stratum_key(protocol, site=site.code, sex=sex)] = max(needed, 1)
    return lengths


def _store(
    actor, source: str, slots: list[Slot], parameters: dict, seed: bytes | None
) -> RandomizationList:
    protocol = current_protocol()
    digest = list_digest(slots, protocol.arms)
    row = RandomizationList(
        source=source,
        parameters=json.dumps(parameters, sort_keys=True),
        seed_encrypted=encrypt_seed(seed) if seed is not None else None,
        list_sha256=digest,
        slot_count=len(slots),
        created_at=utcnow(),
        created_by_id=getattr(actor, "id", None),
    )
    db.session.add(row)
    db.session.flush()
    db.session.add_all(
        RandomizationSlot(
            list_id=row.id,
            stratum=s.stratum,
            sequence=s.sequence,
            block=s.block,
            block_size=s.block_size,
            arm_encrypted=encrypt_arm(s.stratum, s.sequence, s.arm),
            kit_number=s.kit,
        )
        for s in slots
    )
    db.session.flush()
    # The audit entry says that a list exists and binds it to the trail; never an arm, the
    # seed, nor the list's plain SHA-256 (a function of the arms that guesses could be tried
    # against: kept in the list's own row, checked by ``randomization verify``).
    record_event(
        actor,
        f"randomization_list_{source}",
        entity_type="randomization_list",
        entity_id=str(row.id),
        detail={
            "slots": len(slots),
            "strata": len({s.stratum for s in slots}),
            "hmac_sha256": release_digest(digest.encode("ascii")),
            "generator": parameters.get("generator"),
        },
    )
    return row


def generate(actor) -> RandomizationList:
    """Generate the stratified permuted-block list from the protocol and a fresh seed."""
    require_unblinded_statistician(actor)
    protocol = current_protocol()
    if list_loaded():
        raise Conflict("A randomization list is already loaded; a second one is refused.")
    lengths = _strata_lengths()
    if not lengths:
        raise Conflict("No sites exist yet: add sites before generating the list.")
    seed = secrets.token_bytes(32)
    if protocol.randomization_method == "minimization":
        return _generate_kit_pool(actor, seed, lengths)
    parameters = {
        "generator": GENERATOR_NAME,
        "arms": list(protocol.arms),
        "ratio": list(protocol.ratio),
        "block_sizes": list(protocol.block_sizes),
        "strata_factors": list(protocol.strata),
        "strata_lengths": lengths,
        "kit_digits": protocol.kit_digits,
        "list_margin": protocol.list_margin,
    }
    slots = generate_list(seed, lengths, protocol.ratio, protocol.block_sizes, protocol.kit_digits)
    return _store(actor, "generated", slots, parameters, seed)


POOL_STRATUM = "pool"


def _generate_kit_pool(actor, seed: bytes, lengths: dict[str, int]) -> RandomizationList:
    """For minimization: a shuffled pool of kits per arm, each arm able to take the whole trial.

    Minimization decides the arm at allocation; the kit is then the first unused kit of that
    arm. Every arm's pool holds the planned enrollment plus margin, so a pool never runs out
    for one arm before the other (which would tell the site the next arm).
    """
    protocol = current_protocol()
    planned = math.ceil(sum(lengths.values()) / len(SEXES))
    arms = [arm for arm in range(len(protocol.arms)) for _ in range(planned)]
    from randomization.drbg import DeterministicStream
    from randomization.generator import draw_kits

    DeterministicStream(seed, "pool").shuffle(arms)
    kits = draw_kits(seed, len(arms), protocol.kit_digits)
    slots = [
        Slot(POOL_STRATUM, sequence, None, None, arm, kit)
        for sequence, (arm, kit) in enumerate(zip(arms, kits, strict=True), start=1)
    ]
    parameters = {
        "generator": "hmac-sha256-drbg/minimization-kit-pool/v1",
        "method": "minimization",
        "arms": list(protocol.arms),
        "ratio": list(protocol.ratio),
        "factors": list(protocol.minimization_factors),
        "probability_best": protocol.minimization_probability_best,
        "pool_per_arm": planned,
        "kit_digits": protocol.kit_digits,
    }
    return _store(actor, "generated", slots, parameters, seed)


def _regenerate(row: RandomizationList, params: dict) -> list[Slot]:
    seed = decrypt_seed(row.seed_encrypted)
    if params.get("method") == "minimization":
        from randomization.drbg import DeterministicStream
        from randomization.generator import draw_kits

        arms = [arm for arm in range(len(params["arms"])) for _ in range(params["pool_per_arm"])]
        DeterministicStream(seed, "pool").shuffle(arms)
        kits = draw_kits(seed, len(arms), params["kit_digits"])
        return [
            Slot(POOL_STRATUM, sequence, None, None, arm, kit)
            for sequence, (arm, kit) in enumerate(zip(arms, kits, strict=True), start=1)
        ]
    return generate_list(
        seed,
        params["strata_lengths"],
        tuple(params["ratio"]),
        tuple(params["block_sizes"]),
        params["kit_digits"],
    )


# --- import -----------------------------------------------------------------------------


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
    return _store(actor, "imported", slots, parameters, None)


# --- verification and summary ------------------------------------------------------------


@dataclass
class VerifyReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL {message}")

    def good(self, message: str) -> None:
        self.lines.append(f"ok   {message}")


def _stored_slots(list_id: int) -> list[Slot]:
    rows = db.session.scalars(select(RandomizationSlot).where(RandomizationSlot.list_id == list_id))
    return [
        Slot(
            r.stratum,
            r.sequence,
            r.block,
            r.block_size,
            decrypt_arm(r.stratum, r.sequence, r.arm_encrypted),
            r.kit_number,
        )
        for r in rows
    ]


def verify() -> VerifyReport:
    """Regenerate generated lists from their seeds, check hashes, and check list order."""
    report = VerifyReport()
    lists = list(db.session.scalars(select(RandomizationList).order_by(RandomizationList.id)))
    if not lists:
        report.fail("no randomization list is loaded")
        return report
    for row in lists:
        params = json.loads(row.parameters)
        stored = _stored_slots(row.id)
        arms = tuple(params["arms"])
        digest = list_digest(stored, arms)
        if digest == row.list_sha256:
            report.good(f"list {row.id} ({row.source}, {len(stored)} slots): SHA-256 matches")
        else:
            report.fail(f"list {row.id}: stored slots do not match the recorded SHA-256")
        if row.source == "generated":
            regenerated = _regenerate(row, params)
            key = lambda s: (s.stratum, s.sequence)  # noqa: E731
            if sorted(regenerated, key=key) == sorted(stored, key=key):
                report.good(f"list {row.id}: regenerated from its seed, identical")
            else:
                report.fail(f"list {row.id}: regenerating from the seed gives a different list")
    if any(json.loads(row.parameters).get("method") == "minimization" for row in lists):
        _verify_minimization(report)
    else:
        _verify_order(report)
    return report


def _verify_minimization(report: VerifyReport) -> None:
    """Replay every decision and check each allocated kit carries the decided arm."""
    from randomization.crypto import decrypt_json
    from randomization.minimization import Decision, replay
    from randomization.models import MinimizationDecision

    protocol = current_protocol()
    rows = list(
        db.session.scalars(select(MinimizationDecision).order_by(MinimizationDecision.sequence))
    )
    decisions = [Decision.from_json(decrypt_json(row.payload_encrypted)) for row in rows]
    problems = replay(decisions, protocol.ratio)
    if [row.sequence for row in rows] != list(range(1, len(rows) + 1)):
        problems.append("decision sequence numbers have a gap")
    for row, decision in zip(rows, decisions, strict=True):
        slot = db.session.scalar(
            select(RandomizationSlot).where(RandomizationSlot.participant_id == row.participant_id)
        )
        if (
            slot is None
            or decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted) != decision.arm
        ):
            problems.append(f"decision {row.sequence}: the kit given does not match its arm")
    for problem in problems:
        report.fail(problem)
    if not problems:
        report.good(f"all {len(rows)} minimization decisions replay from their draws")


def _verify_order(report: VerifyReport) -> None:
    rows = db.session.execute(
        select(
            RandomizationSlot.stratum,
            RandomizationSlot.sequence,
            RandomizationSlot.randomization_number,
        ).order_by(RandomizationSlot.stratum, RandomizationSlot.sequence)
    )
    by_stratum: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for stratum, sequence, number in rows:
        by_stratum[stratum].append((sequence, number))
    bad = 0
    for stratum, slots in by_stratum.items():
        used = [number for _, number in slots if number is not None]
        flags = [number is not None for _, number in slots]
        if flags != sorted(flags, reverse=True):
            report.fail(f"{stratum}: a slot was skipped (used slots are not the first ones)")
            bad += 1
        elif used != sorted(used):
            report.fail(f"{stratum}: allocations did not follow list order")
            bad += 1
    if not bad:
        report.good(f"allocation order followed the list in all {len(by_stratum)} strata")


def summary(actor, *, simulations: int = 20_000, seed: int | None = None) -> list[dict]:
    """Per stratum: slots, used, remaining, block-size counts and simulated predictability."""
    require_unblinded_statistician(actor)
    protocol = current_protocol()
    rows = db.session.execute(
        select(
            RandomizationSlot.stratum,
            RandomizationSlot.block,
            RandomizationSlot.block_size,
            RandomizationSlot.participant_id,
        )
    )
    strata: dict[str, dict] = {}
    blocks: dict[str, set] = defaultdict(set)
    for stratum, block, size, participant in rows:
        info = strata.setdefault(stratum, {"stratum": stratum, "slots": 0, "used": 0})
        info["slots"] += 1
        info["used"] += participant is not None
        blocks[stratum].add((block, size))
    rng = random.Random(seed)
    share = (
        simulate_guess_share(protocol.block_sizes, protocol.ratio, simulations, rng)
        if simulations
        else None
    )
    result = []
    for stratum in sorted(strata):
        info = strata[stratum]
        info["remaining"] = info["slots"] - info["used"]
        info["block_sizes"] = dict(
            sorted(Counter(size for _, size in blocks[stratum] if size is not None).items())
        )
        info["predictability"] = share
        result.append(info)
    return result
