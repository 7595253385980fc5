"""Known answers that pin the list generator's formats forever (issue 28, item 1).

A recorded seed must re-create its list years later, in any language, from the algorithm
written down in ``randomization/drbg.py`` and ``randomization/generator.py``. These values are
therefore constants: if one of these tests fails, the stream or list format changed, and every
recorded seed stopped reproducing its list. Such a change must be deliberate, migrated (old
lists keep their old format) and documented, never a side effect.

Where the expected values come from (none was produced by the code under test):

* the raw stream blocks: ``openssl dgst -sha256 -mac HMAC -macopt hexkey:<seed>`` over the
  message ``label || 0x00 || counter as 8 bytes big-endian``;
* the draws, shuffles and lists: ``reference_*`` below, a second implementation written from
  the docstrings with ``hmac.digest`` (also used by the tests, so a reader can re-derive every
  literal), whose first bytes agree with openssl;
* the list digest: ``sha256sum`` of the list's CSV written out by hand from the rows below.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from randomization.drbg import DeterministicStream
from randomization.generator import (
    Slot,
    block_contents,
    draw_kits,
    generate_list,
    generate_stratum,
    list_digest,
)

SEED = bytes(range(32))
LABEL = "blocks|site=S01|sex=F"
# openssl, counters 0, 1 and 2 of HMAC-SHA256(SEED, LABEL || 0x00 || counter)
OPENSSL_BLOCKS = (
    "2d82bf3bc876366ad6996efbaa50c53c02513e195926fcc86e1723560d86d6f7",
    "104d0198f1c53663f248b33ff02874f9d3007ff2f62b8dfc39cbc1cf2d749573",
    "10a0b567a767bfc95b0b456b1a7a16550b65123ba61bfde66d33a15a0e7dcdbb",
)


# --- an independent reference, from the docstrings -----------------------------------------


class ReferenceStream:
    def __init__(self, seed: bytes, label: str):
        self.seed, self.message, self.counter = seed, label.encode() + b"\x00", 0
        self.pending = bytearray()

    def take(self, n: int) -> bytes:
        while len(self.pending) < n:
            block = self.message + self.counter.to_bytes(8, "big")
            self.pending += hmac.digest(self.seed, block, "sha256")
            self.counter += 1
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def below(self, n: int) -> int:
        if n == 1:
            return 0
        width = (n.bit_length() + 7) // 8
        accept_under = 256**width - 256**width % n  # the largest multiple of n that fits
        while True:
            value = int.from_bytes(self.take(width), "big")
            if value < accept_under:
                return value % n

    def shuffle(self, items: list) -> None:
        for i in reversed(range(1, len(items))):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def reference_list(seed, lengths, ratio, sizes, digits) -> list[tuple]:
    rows = []
    for stratum in sorted(lengths):
        stream = ReferenceStream(seed, "blocks|" + stratum)
        block = 0
        mine: list[tuple] = []
        while len(mine) < lengths[stratum]:
            block += 1
            size = sizes[stream.below(len(sizes))]
            arms = [a for a, share in enumerate(ratio) for _ in range(share * size // sum(ratio))]
            stream.shuffle(arms)
            mine += [(stratum, len(mine) + k + 1, block, size, arm) for k, arm in enumerate(arms)]
        rows += mine
    kits_stream, seen, kits = ReferenceStream(seed, "kits"), set(), []
    while len(kits) < len(rows):
        value = 10 ** (digits - 1) + kits_stream.below(9 * 10 ** (digits - 1))
        if value not in seen:
            seen.add(value)
            kits.append(str(value))
    return [row + (kit,) for row, kit in zip(rows, kits, strict=True)]


def as_tuples(slots: list[Slot]) -> list[tuple]:
    return [(s.stratum, s.sequence, s.block, s.block_size, s.arm, s.kit) for s in slots]


def sequence_digest(values) -> str:
    return hashlib.sha256(",".join(map(str, values)).encode()).hexdigest()


# --- the byte stream ------------------------------------------------------------------------


def test_the_reference_agrees_with_openssl():
    """The reference is itself checked against a tool outside Python."""
    assert ReferenceStream(SEED, LABEL).take(96).hex() == "".join(OPENSSL_BLOCKS)


def test_stream_bytes_are_hmac_sha256_in_counter_mode():
    assert DeterministicStream(SEED, LABEL)._bytes(96).hex() == "".join(OPENSSL_BLOCKS)


def test_stream_bytes_do_not_depend_on_how_they_are_read():
    stream = DeterministicStream(SEED, LABEL)
    pieces = b"".join(stream._bytes(n) for n in (1, 5, 30, 2, 33, 25))
    assert pieces.hex() == "".join(OPENSSL_BLOCKS)


def test_labels_are_utf8_and_separated_by_a_zero_byte():
    # "blocks|a" + 0x00 and "blocks|a\x00" + nothing must not collide; nor must "blocks|a"
    # with counter 0 and a label that ends in the first counter bytes.
    expected = "f802c379ffb7e0761177933dc84e14424d69cae0d542762e9099b496684c50cce6456d71f1f771cc"
    assert DeterministicStream(b"known-answer", "über|Ω")._bytes(40).hex() == expected
    assert ReferenceStream(b"known-answer", "über|Ω").take(40).hex() == expected


BELOW = {
    2: [1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0],
    3: [1, 2, 2, 2, 1, 1, 2, 0, 2, 2, 1, 0],
    6: [4, 2, 4, 4, 1, 4, 3, 3, 5, 0, 1, 0],
    7: [2, 1, 6, 0, 6, 2, 3, 5, 0, 3, 0, 6],
    255: [100, 205, 147, 247, 252, 4, 87, 191, 4, 73, 146, 99],
    256: [107, 106, 19, 146, 29, 33, 77, 108, 135, 249, 2, 38],
    257: [108, 86, 230, 243, 22, 230, 248, 72, 172, 197, 0, 203],
    40000: [27172, 30660, 1263, 18951, 21007, 37933, 27893, 32694, 5717, 33146, 2780, 21601],
    # two bytes, about half of them (33000-65535) rejected: a limit off by a little shows
    33000: [20124, 21727, 5788, 31227, 30232, 21541, 31747, 27352, 5136, 7363, 20244, 5957],
    900000: [855676, 330804, 113343, 320477, 583931, 475148, 704735, 682784, 310375, 79843,
             572560, 851283],
}  # fmt: skip


@pytest.mark.parametrize("n", sorted(BELOW))
def test_below_known_answers(n):
    stream = DeterministicStream(b"known-answer", f"below-{n}")
    assert [stream.below(n) for _ in range(12)] == BELOW[n]
    reference = ReferenceStream(b"known-answer", f"below-{n}")
    assert [reference.below(n) for _ in range(12)] == BELOW[n]


def test_below_rejects_exactly_at_the_limit():
    """5,000 draws of below(255) (one byte each; 255 is rejected): a stream that accepted the
    limit itself, or any other limit, drifts out of step with the recorded sequence."""
    stream = DeterministicStream(b"known-answer", "below-255")
    draws = [stream.below(255) for _ in range(5000)]
    assert sequence_digest(draws) == (
        "3b699b41d8d40e97128aa982f6f75b9183889aea24855b013181e088f5ec05d2"
    )
    stream = DeterministicStream(b"known-answer", "below-40000")
    draws = [stream.below(40000) for _ in range(2000)]
    assert sequence_digest(draws) == (
        "d9184c2fbe4f5de1c131a9c5ad1705a1df0743f40cd072a03216d63d29ff2234"
    )


def test_below_one_draws_nothing_and_below_zero_is_refused():
    stream = DeterministicStream(b"known-answer", "below-2")
    assert stream.below(1) == 0  # consumes no bytes: the next draws are below(2)'s
    assert [stream.below(2) for _ in range(4)] == BELOW[2][:4]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="^n must be positive$"):
            stream.below(bad)


def test_uniform_known_answers():
    """Seven bytes, big-endian, the top 53 bits, divided by 2**53 (reference values)."""
    stream = DeterministicStream(b"known-answer", "uniform")
    assert [stream.uniform() for _ in range(3)] == [
        0.9656232885770563,
        0.47498443157171344,
        0.0575896588018221,
    ]
    assert DeterministicStream(b"\xff" * 8, "x").uniform() < 1.0


def test_shuffle_and_choice_known_answers():
    stream = DeterministicStream(b"known-answer", "shuffle")
    first, second = list(range(10)), list(range(10))
    stream.shuffle(first)
    stream.shuffle(second)
    assert first == [0, 1, 3, 7, 9, 6, 5, 8, 2, 4]
    assert second == [1, 5, 0, 4, 2, 6, 3, 7, 9, 8]
    stream = DeterministicStream(b"known-answer", "choice")
    assert "".join(stream.choice("abcde") for _ in range(10)) == "cbedeaceae"


# --- a whole list ----------------------------------------------------------------------------

LENGTHS = {"site=S01|sex=F": 10, "site=S01|sex=M": 7, "site=S02|sex=F": 4}
# (stratum, sequence, block, block size, arm, kit): blocks drawn from {2, 4, 6}, 1:1, 6-digit
# kits. Strata come out complete blocks long (12, 8 and 6 slots), in sorted order.
KNOWN_LIST = [
    ("site=S01|sex=F", 1, 1, 2, 1, "233514"),
    ("site=S01|sex=F", 2, 1, 2, 0, "240402"),
    ("site=S01|sex=F", 3, 2, 6, 0, "380815"),
    ("site=S01|sex=F", 4, 2, 6, 1, "573378"),
    ("site=S01|sex=F", 5, 2, 6, 1, "799874"),
    ("site=S01|sex=F", 6, 2, 6, 0, "239659"),
    ("site=S01|sex=F", 7, 2, 6, 0, "381725"),
    ("site=S01|sex=F", 8, 2, 6, 1, "647273"),
    ("site=S01|sex=F", 9, 3, 4, 0, "400046"),
    ("site=S01|sex=F", 10, 3, 4, 1, "303553"),
    ("site=S01|sex=F", 11, 3, 4, 1, "693928"),
    ("site=S01|sex=F", 12, 3, 4, 0, "776141"),
    ("site=S01|sex=M", 1, 1, 2, 0, "968383"),
    ("site=S01|sex=M", 2, 1, 2, 1, "160919"),
    ("site=S01|sex=M", 3, 2, 6, 0, "864991"),
    ("site=S01|sex=M", 4, 2, 6, 0, "335279"),
    ("site=S01|sex=M", 5, 2, 6, 1, "354975"),
    ("site=S01|sex=M", 6, 2, 6, 1, "934107"),
    ("site=S01|sex=M", 7, 2, 6, 0, "854179"),
    ("site=S01|sex=M", 8, 2, 6, 1, "812012"),
    ("site=S02|sex=F", 1, 1, 6, 1, "792781"),
    ("site=S02|sex=F", 2, 1, 6, 0, "726519"),
    ("site=S02|sex=F", 3, 1, 6, 1, "397090"),
    ("site=S02|sex=F", 4, 1, 6, 0, "124801"),
    ("site=S02|sex=F", 5, 1, 6, 0, "312209"),
    ("site=S02|sex=F", 6, 1, 6, 1, "401161"),
]
# sha256sum of the CSV of KNOWN_LIST with arms named baclofen (0) and placebo (1)
KNOWN_DIGEST = "6656ecb7bfee5333729cdc398534709592c3e9444ace00504663916777ece0fb"

# A 2:1 ratio with blocks of 3 or 6 and 4-digit kits; 9 slots asked for and 9 made (the list
# stops as soon as it holds the length, not one block later).
KNOWN_RATIO_LIST = [
    ("site=S03|sex=M", 1, 1, 3, 1, "3621"),
    ("site=S03|sex=M", 2, 1, 3, 0, "9429"),
    ("site=S03|sex=M", 3, 1, 3, 0, "6363"),
    ("site=S03|sex=M", 4, 2, 6, 0, "6035"),
    ("site=S03|sex=M", 5, 2, 6, 1, "5803"),
    ("site=S03|sex=M", 6, 2, 6, 0, "2798"),
    ("site=S03|sex=M", 7, 2, 6, 1, "2134"),
    ("site=S03|sex=M", 8, 2, 6, 0, "2835"),
    ("site=S03|sex=M", 9, 2, 6, 0, "8056"),
]


def test_a_whole_list_for_a_fixed_seed():
    assert as_tuples(generate_list(SEED, LENGTHS, (1, 1), (2, 4, 6), 6)) == KNOWN_LIST
    assert reference_list(SEED, LENGTHS, (1, 1), (2, 4, 6), 6) == KNOWN_LIST


def test_a_whole_list_with_an_uneven_ratio():
    lengths = {"site=S03|sex=M": 9}
    assert as_tuples(generate_list(b"kit-seed" * 4, lengths, (2, 1), (3, 6), 4)) == (
        KNOWN_RATIO_LIST
    )
    assert reference_list(b"kit-seed" * 4, lengths, (2, 1), (3, 6), 4) == KNOWN_RATIO_LIST


def test_a_stratum_alone_is_its_part_of_the_list():
    """Strata have their own streams: a stratum's slots do not depend on the others."""
    alone = generate_stratum(SEED, "site=S01|sex=M", 7, (1, 1), (2, 4, 6))
    assert alone == [(b, size, arm) for s, _, b, size, arm, _ in KNOWN_LIST if s.endswith("M")]
    kits = draw_kits(SEED, len(KNOWN_LIST), 6)
    assert kits == [row[5] for row in KNOWN_LIST]


def known_csv(rows, arm_names) -> str:
    lines = ["stratum,sequence,block,block_size,arm,kit"]
    lines += [f"{s},{q},{b},{z},{arm_names[a]},{k}" for s, q, b, z, a, k in rows]
    return "\n".join(lines) + "\n"


def slots_of(rows) -> list[Slot]:
    return [Slot(*row) for row in rows]


def test_the_list_digest_is_sha256_of_the_canonical_csv():
    names = ("baclofen", "placebo")
    assert hashlib.sha256(known_csv(KNOWN_LIST, names).encode()).hexdigest() == KNOWN_DIGEST
    assert list_digest(slots_of(KNOWN_LIST), names) == KNOWN_DIGEST
    # The digest sorts by stratum and sequence itself: input order does not matter.
    assert list_digest(slots_of(KNOWN_LIST[::-1]), names) == KNOWN_DIGEST


FIELDS = ("stratum", "sequence", "block", "block_size", "arm", "kit")


@pytest.mark.parametrize("position", [0, 11, 25])
@pytest.mark.parametrize("field", FIELDS)
def test_any_altered_slot_changes_the_digest(position, field):
    """``randomization verify`` compares this digest: every field of every slot counts."""
    rows = [list(row) for row in KNOWN_LIST]
    value = rows[position][FIELDS.index(field)]
    changed = {
        "stratum": lambda: "site=S09|sex=F",
        "sequence": lambda: 99,
        "block": lambda: 9,
        "block_size": lambda: 6 if value == 4 else 4,
        "arm": lambda: 1 - value,
        "kit": lambda: "999999",
    }[field]()
    rows[position][FIELDS.index(field)] = changed
    altered = [tuple(row) for row in rows]
    names = ("baclofen", "placebo")
    assert list_digest(slots_of(altered), names) != KNOWN_DIGEST
    assert (
        list_digest(slots_of(altered), names)
        == (
            hashlib.sha256(known_csv(sorted(altered, key=lambda r: (r[0], r[1])), names).encode())
        ).hexdigest()
    )


def test_the_digest_names_the_arms():
    assert list_digest(slots_of(KNOWN_LIST), ("placebo", "baclofen")) != KNOWN_DIGEST


# --- block contents and the kit capacity ------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ratio", "expected"),
    [
        (2, (1, 1), [0, 1]),
        (4, (1, 1), [0, 0, 1, 1]),
        (6, (2, 1), [0, 0, 0, 0, 1, 1]),
        (6, (1, 2), [0, 0, 1, 1, 1, 1]),
        (5, (1, 2, 2), [0, 1, 1, 2, 2]),
        (10, (1, 2, 2), [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]),
    ],
)
def test_block_contents(size, ratio, expected):
    assert block_contents(size, ratio) == expected


def test_a_block_size_off_the_ratio_is_refused():
    for size, ratio in ((3, (1, 1)), (4, (2, 1)), (7, (1, 2, 2))):
        with pytest.raises(
            ValueError, match=r"^block size \d+ is not a multiple of the ratio sum \d+$"
        ):
            block_contents(size, ratio)


def test_kits_never_use_more_than_half_the_numbers():
    """Two-digit kits: 10-99 is 90 numbers, so at most 45 kits (a full draw would make the
    last kits predictable); the 45 are distinct two-digit numbers."""
    kits = draw_kits(b"capacity", 45, 2)
    assert len(set(kits)) == 45 and all(10 <= int(k) <= 99 for k in kits)
    with pytest.raises(ValueError, match="^46 kits need more than 2 digits$"):
        draw_kits(b"capacity", 46, 2)
    assert len(draw_kits(b"capacity", 450, 3)) == 450
    with pytest.raises(ValueError, match="451 kits"):
        draw_kits(b"capacity", 451, 3)
    assert draw_kits(b"capacity", 0, 6) == []


def test_kits_span_the_whole_range_of_their_digits():
    """Drawn without replacement from every ``digits``-digit number: both ends are reached."""
    kits = [int(k) for k in draw_kits(b"range", 45, 2)]
    reference = ReferenceStream(b"range", "kits")
    expected, seen = [], set()
    while len(expected) < 45:
        value = 10 + reference.below(90)
        if value not in seen:
            seen.add(value)
            expected.append(value)
    assert kits == expected
    assert min(kits) < 15 and max(kits) > 94
