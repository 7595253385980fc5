"""Predictability of a block design: the share of correct guesses of a convergence guesser.

The guesser (Blackwell and Hodges) knows the block boundaries and the allocations so far, and
always guesses the arm furthest behind its target in the current block, choosing at random
among ties. For fixed blocks of 2m (1:1) the expected share is
(m + 2^(2m-1) / C(2m, m) - 1/2) / (2m): 0.750, 0.708 and 0.683 for blocks of 2, 4 and 6.
"""

from __future__ import annotations

import random

from randomization.generator import block_contents


def expected_fixed_block_share(block_size: int) -> float:
    from math import comb

    m = block_size // 2
    return (m + 2 ** (2 * m - 1) / comb(2 * m, m) - 0.5) / (2 * m)


def simulate_guess_share(
    block_sizes: tuple[int, ...], ratio: tuple[int, ...], allocations: int, rng: random.Random
) -> float:
    """Simulate ``allocations`` allocations of random blocks; return the correct-guess share."""
    correct = done = 0
    while done < allocations:
        size = rng.choice(block_sizes)
        block = block_contents(size, ratio)
        rng.shuffle(block)
        remaining = [block.count(arm) for arm in range(len(ratio))]
        for arm in block:
            best = max(remaining)
            candidates = [a for a, left in enumerate(remaining) if left == best]
            if rng.choice(candidates) == arm:
                correct += 1
            remaining[arm] -= 1
            done += 1
    return correct / done
