"""The list generator's properties, without a database (known answers and statistics: see
tests/test_generator_known_answers.py and tests/test_generator_statistics.py)."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from randomization.drbg import DeterministicStream
from randomization.generator import block_contents, draw_kits, generate_list, list_digest

ratios = st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=4).map(tuple)
multiples = st.lists(
    st.integers(min_value=1, max_value=4), min_size=1, max_size=3, unique=True
).map(lambda xs: tuple(sorted(xs)))
strata = st.dictionaries(
    st.from_regex(r"site=S0[1-9]\|sex=[FM]", fullmatch=True),
    st.integers(min_value=1, max_value=60),
    min_size=1,
    max_size=4,
)
seeds = st.binary(min_size=16, max_size=32)


@settings(max_examples=150, deadline=None)
@given(seed=seeds, ratio=ratios, mults=multiples, lengths=strata)
def test_blocks_hold_the_ratio_and_imbalance_stays_bounded(seed, ratio, mults, lengths):
    sizes = tuple(m * sum(ratio) for m in mults)
    slots = generate_list(seed, lengths, ratio, sizes, kit_digits=7)
    for stratum, length in lengths.items():
        mine = sorted((s for s in slots if s.stratum == stratum), key=lambda s: s.sequence)
        assert [s.sequence for s in mine] == list(range(1, len(mine) + 1))
        assert len(mine) >= length
        blocks: dict[int, list[int]] = {}
        for slot in mine:
            blocks.setdefault(slot.block, []).append(slot.arm)
            assert slot.block_size in sizes
        for arms in blocks.values():  # every block is complete and holds the ratio exactly
            unit = len(arms) // sum(ratio)
            assert Counter(arms) == Counter({a: r * unit for a, r in enumerate(ratio)})
        # Running imbalance (vs the ratio) never exceeds half the largest block.
        counts = [0] * len(ratio)
        for n, slot in enumerate(mine, start=1):
            counts[slot.arm] += 1
            for arm, share in enumerate(ratio):
                assert abs(counts[arm] - n * share / sum(ratio)) <= max(sizes) / 2


@settings(max_examples=40, deadline=None)
@given(seed=seeds, lengths=strata)
def test_same_seed_same_list_and_kits_unique(seed, lengths):
    first = generate_list(seed, lengths, (1, 1), (2, 4, 6), kit_digits=6)
    again = generate_list(seed, lengths, (1, 1), (2, 4, 6), kit_digits=6)
    assert first == again
    assert list_digest(first, ("a", "b")) == list_digest(again, ("a", "b"))
    kits = [s.kit for s in first]
    assert len(set(kits)) == len(kits) and all(len(k) == 6 for k in kits)


def test_different_seeds_differ():
    lengths = {"site=S01|sex=F": 100}
    a = generate_list(b"a" * 32, lengths, (1, 1), (2, 4, 6), 6)
    b = generate_list(b"b" * 32, lengths, (1, 1), (2, 4, 6), 6)
    assert [s.arm for s in a] != [s.arm for s in b]


def test_a_broken_generator_is_caught():
    """The block check above fails on an unbalanced block: the property can fail."""
    with pytest.raises(ValueError):
        block_contents(5, (1, 1))
    assert Counter(block_contents(6, (2, 1))) == Counter({0: 4, 1: 2})


def test_kits_are_unrelated_to_arm_and_position():
    slots = generate_list(
        b"k" * 32,
        {f"site=S0{i}|sex={s}": 300 for i in range(1, 4) for s in "FM"},
        (1, 1),
        (2, 4, 6),
        6,
    )
    by_arm = {arm: [int(s.kit) for s in slots if s.arm == arm] for arm in (0, 1)}
    means = {arm: sum(v) / len(v) for arm, v in by_arm.items()}
    # Uniform on [100000, 999999]: sd of a mean of ~900 draws is ~8,700.
    assert abs(means[0] - means[1]) < 40_000
    ordered = [int(s.kit) for s in slots]
    rising = sum(b > a for a, b in zip(ordered, ordered[1:], strict=False))
    assert 0.45 < rising / (len(ordered) - 1) < 0.55


def test_drbg_is_uniform_and_reproducible():
    stream = DeterministicStream(b"seed", "test")
    draws = [stream.below(6) for _ in range(60_000)]
    counts = Counter(draws)
    assert set(counts) == set(range(6))
    assert all(abs(c - 10_000) < 500 for c in counts.values())
    again = DeterministicStream(b"seed", "test")
    assert [again.below(6) for _ in range(100)] == draws[:100]
    assert draw_kits(b"s", 50, 6) == draw_kits(b"s", 50, 6)


# The predictability simulation (now through the trial's own generator) and the statistical
# tests of the generator are in tests/test_generator_statistics.py.
