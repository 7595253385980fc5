"""Generate the randomization list (or minimization's kit pool) and store it encrypted."""

from __future__ import annotations

import json
import math
import secrets

from sqlalchemy import func, select

from randomization.crypto import decrypt_seed, encrypt_arm, encrypt_seed
from randomization.drbg import DeterministicStream
from randomization.generator import Slot, draw_kits, generate_list, list_digest
from randomization.models import RandomizationList, RandomizationSlot
from randomization.release import release_digest
from randomization.strata import stratum_key
from trial.audit.services import record_event
from trial.auth.roles import Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden
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
            lengths[stratum_key(protocol, site=site.code, sex=sex)] = max(needed, 1)
    return lengths


def store_list(
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
    return store_list(actor, "generated", slots, parameters, seed)


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
    return store_list(actor, "generated", slots, parameters, seed)


def regenerate_slots(row: RandomizationList, params: dict) -> list[Slot]:
    seed = decrypt_seed(row.seed_encrypted)
    if params.get("method") == "minimization":
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
