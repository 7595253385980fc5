"""Build stratified permuted-block lists and kit numbers from a seed (pure, no database).

Each stratum has its own stream (label ``blocks|<stratum>``): a block size is drawn uniformly
from the allowed sizes, the block holds each arm ``size / sum(ratio) * ratio[arm]`` times, and
it is shuffled. Blocks are appended until the stratum holds at least its required length, so
every block is complete. Kit numbers come from a separate stream (label ``kits``), drawn
without replacement and assigned in list order, so a kit number carries no information about
arm, block or position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from randomization.drbg import DeterministicStream


@dataclass(frozen=True)
class Slot:
    stratum: str
    sequence: int  # 1-based position in the stratum's list
    block: int  # 1-based block number within the stratum
    block_size: int
    arm: int  # index into the protocol's arm names
    kit: str


def block_contents(size: int, ratio: tuple[int, ...]) -> list[int]:
    total = sum(ratio)
    if size % total:
        raise ValueError(f"block size {size} is not a multiple of the ratio sum {total}")
    per_unit = size // total
    return [arm for arm, share in enumerate(ratio) for _ in range(share * per_unit)]


def generate_stratum(
    seed: bytes, stratum: str, length: int, ratio: tuple[int, ...], block_sizes: tuple[int, ...]
) -> list[tuple[int, int, int]]:
    """Return (block, block_size, arm) for at least ``length`` slots, in complete blocks."""
    stream = DeterministicStream(seed, f"blocks|{stratum}")
    slots: list[tuple[int, int, int]] = []
    block = 0
    while len(slots) < length:
        block += 1
        size = stream.choice(block_sizes)
        arms = block_contents(size, ratio)
        stream.shuffle(arms)
        slots.extend((block, size, arm) for arm in arms)
    return slots


def draw_kits(seed: bytes, count: int, digits: int) -> list[str]:
    """Draw ``count`` distinct kit numbers of ``digits`` digits (no leading zero)."""
    low, high = 10 ** (digits - 1), 10**digits
    if count > (high - low) // 2:
        raise ValueError(f"{count} kits need more than {digits} digits")
    stream = DeterministicStream(seed, "kits")
    seen: set[int] = set()
    kits: list[str] = []
    while len(kits) < count:
        value = low + stream.below(high - low)
        if value not in seen:
            seen.add(value)
            kits.append(str(value))
    return kits


def generate_list(
    seed: bytes,
    strata_lengths: dict[str, int],
    ratio: tuple[int, ...],
    block_sizes: tuple[int, ...],
    kit_digits: int,
) -> list[Slot]:
    """The whole list: strata in sorted order, kits assigned in that order."""
    rows = []
    for stratum in sorted(strata_lengths):
        for sequence, (block, size, arm) in enumerate(
            generate_stratum(seed, stratum, strata_lengths[stratum], ratio, block_sizes), start=1
        ):
            rows.append((stratum, sequence, block, size, arm))
    kits = draw_kits(seed, len(rows), kit_digits)
    return [
        Slot(stratum, sequence, block, size, arm, kit)
        for (stratum, sequence, block, size, arm), kit in zip(rows, kits, strict=True)
    ]


def list_digest(slots: list[Slot], arm_names: tuple[str, ...]) -> str:
    """SHA-256 of the list's canonical CSV (stratum, sequence, block, block_size, arm, kit)."""
    digest = hashlib.sha256()
    digest.update(b"stratum,sequence,block,block_size,arm,kit\n")
    for slot in sorted(slots, key=lambda s: (s.stratum, s.sequence)):
        digest.update(
            f"{slot.stratum},{slot.sequence},{slot.block},{slot.block_size},"
            f"{arm_names[slot.arm]},{slot.kit}\n".encode()
        )
    return digest.hexdigest()
