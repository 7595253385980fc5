"""Predictability of a block design: the share of correct guesses of a convergence guesser.

The guesser (Blackwell and Hodges) knows the block boundaries and the allocations so far, and
always guesses the arm furthest behind its target in the current block, choosing at random
among ties. For fixed blocks of 2m (1:1) the expected share is
(m + 2^(2m-1) / C(2m, m) - 1/2) / (2m): 0.750, 0.708 and 0.683 for blocks of 2, 4 and 6.

The simulation runs the trial's own generator (``generate_stratum`` and the deterministic
stream), not a stand-in, so the figure describes the lists the trial actually draws: a
generator that stopped shuffling, or shuffled with a bias, shows here too.
"""

from __future__ import annotations

import random
from math import comb

from randomization.drbg import DeterministicStream
from randomization.generator import block_contents, generate_stratum


def expected_fixed_block_share(block_size: int) -> float:
    m = block_size // 2
    return (m + 2 ** (2 * m - 1) / comb(2 * m, m) - 0.5) / (2 * m)


def simulate_guess_share(
    block_sizes: tuple[int, ...],
    ratio: tuple[int, ...],
    allocations: int,
    rng: random.Random | bytes,
) -> float:
    """The guesser's share of correct guesses over one simulated stratum of at least
    ``allocations`` slots (whole blocks), drawn by the trial's generator.

    ``rng`` is the simulation's seed, or a ``random.Random`` that draws one (32 bytes). The
    guesser's ties are broken by its own stream of the same seed (label ``guesser``).
    """
    seed = rng if isinstance(rng, bytes) else rng.randbytes(32)
    slots = generate_stratum(seed, "predictability", allocations, ratio, block_sizes)
    ties = DeterministicStream(seed, "guesser")
    correct = 0
    current_block = None
    remaining: list[int] = []
    for block, size, arm in slots:
        if block != current_block:
            current_block = block
            contents = block_contents(size, ratio)
            remaining = [contents.count(a) for a in range(len(ratio))]
        best = max(remaining)
        candidates = [a for a, left in enumerate(remaining) if left == best]
        if ties.choice(candidates) == arm:
            correct += 1
        remaining[arm] -= 1
    return correct / len(slots)
