"""Summarise the list per stratum for the unblinded statistician (use and predictability)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from sqlalchemy import select

from randomization.lists.generation import (
    require_unblinded_statistician,
)
from randomization.models import RandomizationSlot
from randomization.predictability import simulate_guess_share
from trial.extensions import db
from trial.protocol import current_protocol


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
