"""Statistical tests of the trial's own generator (issue 28, item 2), seeded and so never flaky.

Every test draws from ``randomization.drbg`` / ``randomization.generator`` with a fixed seed,
so each run sees the same numbers: a test passes or fails the same way every time. The
thresholds are still set as if the seed were random, so the statements below are real:

* level: each chi-square test rejects at p < ``ALPHA`` = 1e-4, so a correct generator would
  fail one of them for fewer than 1 seed in 10,000 (the fixed seeds pass);
* power: for each mutant the issue lists, ``test_power_against_the_listed_mutants`` works out
  from the mutant's exact distribution (enumerated, not sampled) the noncentrality of the
  statistic and the probability that the test rejects it; every one is above 0.999;
* negative controls: the same mutants, patched into the generator, are run through the same
  tests with the same seeds and are rejected (``test_each_mutant_is_caught``).

The predictability simulation runs through the trial's generator and is compared with the
closed form of the convergence guesser within 4 standard errors, the standard error worked out
exactly from the distribution of one block.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest

from randomization import drbg, generator
from randomization.drbg import DeterministicStream
from randomization.generator import block_contents, generate_stratum
from randomization.predictability import expected_fixed_block_share, simulate_guess_share
from tests.mutants import negative_control

ALPHA = 1e-4
SEED = b"statistics-seed-0001"

# --- chi-square, exactly, without scipy ------------------------------------------------------


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square with integer ``df`` (closed forms of the incomplete gamma)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return math.exp(-half) * total
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(half) / math.gamma(1.5)
    for i in range(0, (df - 1) // 2):
        if i:
            term *= half / (i + 0.5)
        total += math.exp(-half) * term
    return total


def chi2_critical(df: int, alpha: float = ALPHA) -> float:
    low, high = 0.0, df + 50 * math.sqrt(2 * df) + 100
    for _ in range(200):
        middle = (low + high) / 2
        if chi2_sf(middle, df) > alpha:
            low = middle
        else:
            high = middle
    return high


def chi_square(counts: Counter, probabilities: dict) -> float:
    n = sum(counts.values())
    assert set(counts) <= set(probabilities), set(counts) - set(probabilities)
    return sum((counts[k] - n * p) ** 2 / (n * p) for k, p in probabilities.items())


def rejects(counts: Counter, probabilities: dict) -> bool:
    statistic = chi_square(counts, probabilities)
    return chi2_sf(statistic, len(probabilities) - 1) < ALPHA


def power(probabilities: dict, mutant: dict, n: int) -> float:
    """P(reject) when the draws follow ``mutant``: noncentral chi-square, normal approximation
    (mean df + lambda, variance 2 (df + 2 lambda)); 1.0 when the mutant makes an expected
    outcome impossible or an impossible one possible (then lambda is n times at least 1/k)."""
    if set(mutant) - set(probabilities):
        return 1.0
    df = len(probabilities) - 1
    lam = n * sum((mutant.get(k, 0) - p) ** 2 / p for k, p in probabilities.items())
    z = (chi2_critical(df) - df - lam) / math.sqrt(2 * (df + 2 * lam))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_chi2_sf_matches_known_values():
    # Tables: chi-square upper points.
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(5.991464547107979, 2) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(30.143527205646159, 19) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(15.086272469388987, 5) == pytest.approx(0.01, rel=1e-9)
    assert chi2_critical(1) == pytest.approx(15.13670523, rel=1e-6)  # p = 1e-4, df = 1


# --- what the generator should draw ----------------------------------------------------------


def arrangements(size: int, ratio=(1, 1)) -> dict[tuple, float]:
    """Every distinct ordering of a block, equally likely."""
    orders = set(itertools.permutations(block_contents(size, ratio)))
    return {order: 1 / len(orders) for order in orders}


def block_orders(size: int, blocks: int, seed: bytes = SEED) -> Counter:
    slots = generate_stratum(seed, f"stats|{size}", size * blocks, (1, 1), (size,))
    arms = [arm for _, _, arm in slots]
    return Counter(tuple(arms[i : i + size]) for i in range(0, len(arms), size))


BLOCKS = {2: 2000, 4: 3000, 6: 4000}  # blocks drawn per size


@pytest.mark.parametrize("size", sorted(BLOCKS))
def test_every_ordering_of_a_block_is_equally_frequent(size):
    """Blocks of 2, 4 and 6 (1:1): the 2, 6 and 20 orderings each about equally often."""
    counts = block_orders(size, BLOCKS[size])
    assert set(counts) == set(arrangements(size))
    assert not rejects(counts, arrangements(size))


PERMUTATIONS = {4: 4800, 5: 12000}  # shuffles of distinct items: 24 and 120 permutations


@pytest.mark.parametrize("n", sorted(PERMUTATIONS))
def test_every_permutation_of_distinct_items_is_equally_frequent(n):
    """The Fisher-Yates shuffle itself, on distinct items: all n! permutations (a loop that
    stops early, steps by 2 or draws below(i) instead of below(i + 1) reaches fewer)."""
    stream = DeterministicStream(SEED, f"permutations|{n}")
    counts = Counter()
    for _ in range(PERMUTATIONS[n]):
        items = list(range(n))
        stream.shuffle(items)
        counts[tuple(items)] += 1
    expected = {p: 1 / math.factorial(n) for p in itertools.permutations(range(n))}
    assert len(counts) == math.factorial(n)
    assert not rejects(counts, expected)


def residue_classes(n: int, width: int) -> dict[str, float]:
    """The two classes of [0, n) that plain ``value % n`` would weigh differently: the
    residues below 256**width mod n, and the rest."""
    short = 256**width % n
    return {"low": short / n, "high": (n - short) / n}


AWKWARD = [3, 6, 7, 192, 255]  # one byte; 192 is the worst case for a plain modulo (64 of
# its residues would come up twice as often as the other 128)


@pytest.mark.parametrize("n", AWKWARD)
def test_below_is_uniform_for_awkward_n(n):
    stream = DeterministicStream(SEED, f"below|{n}")
    draws = 60 * n
    counts = Counter(stream.below(n) for _ in range(draws))
    assert not rejects(counts, {k: 1 / n for k in range(n)})


@pytest.mark.parametrize("n", [40000, 11_184_811])
def test_below_has_no_modulo_bias_on_wide_draws(n):
    """Two and three bytes: without rejection, the residues below 65536 mod 40000 = 25536
    (or 2**24 mod 11,184,811 = 5,592,405, half of it) would come up twice as often as the rest."""
    width = (n.bit_length() + 7) // 8
    stream = DeterministicStream(SEED, f"below|{n}")
    short = 256**width % n
    counts = Counter("low" if stream.below(n) < short else "high" for _ in range(4000))
    assert not rejects(counts, residue_classes(n, width))


def test_block_sizes_are_drawn_uniformly():
    slots = generate_stratum(SEED, "sizes", 24000, (1, 1), (2, 4, 6))
    size_of_block = {block: size for block, size, _ in slots}
    sizes = Counter(size_of_block.values())
    assert not rejects(sizes, {2: 1 / 3, 4: 1 / 3, 6: 1 / 3})


def test_each_position_of_a_block_is_either_arm_half_the_time():
    """Blocks of 6: at every position, placebo half the time (binomial, two-sided)."""
    counts = block_orders(6, 4000)
    for position in range(6):
        at = Counter()
        for order, k in counts.items():
            at[order[position]] += k
        assert not rejects(at, {0: 0.5, 1: 0.5}), position


# --- the mutants of the issue, exactly -----------------------------------------------------


def fisher_yates(items, below):
    for i in range(len(items) - 1, 0, -1):
        j = below(i + 1)
        items[i], items[j] = items[j], items[i]


def mutant_no_shuffle(items, below):
    pass


def mutant_starts_one_early(items, below):
    for i in range(len(items) - 2, 0, -1):
        j = below(i + 1)
        items[i], items[j] = items[j], items[i]


def mutant_stops_early(items, below):
    for i in range(len(items) - 1, 1, -1):
        j = below(i + 1)
        items[i], items[j] = items[j], items[i]


def mutant_steps_by_two(items, below):
    for i in range(len(items) - 1, 0, -2):
        j = below(i + 1)
        items[i], items[j] = items[j], items[i]


def mutant_below_i(items, below):
    for i in range(len(items) - 1, 0, -1):
        j = below(i)
        items[i], items[j] = items[j], items[i]


def mutant_below_two_is_zero(items, below):
    """``n == 1`` -> ``n == 2`` in below(): below(2) always 0."""
    for i in range(len(items) - 1, 0, -1):
        j = 0 if i + 1 == 2 else below(i + 1)
        items[i], items[j] = items[j], items[i]


SHUFFLE_MUTANTS = {
    "no shuffle": mutant_no_shuffle,
    "loop starts one step early": mutant_starts_one_early,
    "loop stops early": mutant_stops_early,
    "loop steps by 2": mutant_steps_by_two,
    "below(i) for below(i + 1)": mutant_below_i,
    "n == 1 -> n == 2 in below": mutant_below_two_is_zero,
}


class _Need(Exception):
    def __init__(self, n):
        self.n = n


def exact_distribution(shuffle, items) -> dict[tuple, Fraction]:
    """Every outcome of ``shuffle`` with uniform draws, with its exact probability: each path
    of draws is walked once, its probability the product of 1/n over its draws below(n)."""
    result: dict[tuple, Fraction] = {}
    pending: list[tuple[int, ...]] = [()]
    while pending:
        prefix = pending.pop()
        draws, sizes = iter(prefix), []

        def below(n, draws=draws, sizes=sizes):
            value = next(draws, None)
            if value is None:
                raise _Need(n)
            sizes.append(n)
            return value

        trial = list(items)
        try:
            shuffle(trial, below)
        except _Need as need:
            pending.extend(prefix + (j,) for j in range(need.n))
            continue
        key = tuple(trial)
        result[key] = result.get(key, 0) + Fraction(1, math.prod(sizes))
    return result


def test_exact_distribution_of_fisher_yates_is_uniform():
    for size in (2, 4, 6):
        exact = exact_distribution(fisher_yates, block_contents(size, (1, 1)))
        assert exact == {k: Fraction(1, len(exact)) for k in arrangements(size)}


def modulo_biased(n: int) -> dict:
    """below(n) without rejection: ``value % n`` over all 256**width values."""
    width = (n.bit_length() + 7) // 8
    short = 256**width % n
    total = 256**width
    return {"low": (total // n + 1) * short / total, "high": (total // n) * (n - short) / total}


@pytest.mark.parametrize("name", sorted(SHUFFLE_MUTANTS))
def test_power_against_the_listed_mutants(name):
    """For each shuffle mutant, the probability that some test above rejects it (block sizes
    4 and 6, and distinct items for the ones a block cannot tell apart) is above 0.999."""
    mutant = SHUFFLE_MUTANTS[name]
    best = 0.0
    for size in (4, 6):
        distribution = exact_distribution(mutant, block_contents(size, (1, 1)))
        probabilities = {k: float(v) for k, v in distribution.items()}
        best = max(best, power(arrangements(size), probabilities, BLOCKS[size]))
    for n in PERMUTATIONS:
        distribution = exact_distribution(mutant, list(range(n)))
        probabilities = {k: float(v) for k, v in distribution.items()}
        uniform = {p: 1 / math.factorial(n) for p in itertools.permutations(range(n))}
        best = max(best, power(uniform, probabilities, PERMUTATIONS[n]))
    assert best > 0.999, (name, best)


@pytest.mark.parametrize("n", [192, 40000, 11_184_811])
def test_power_against_modulo_bias(n):
    width = (n.bit_length() + 7) // 8
    if width == 1:
        uniform = {k: 1 / n for k in range(n)}
        short = 256 % n
        biased = {k: (256 // n + (k < short)) / 256 for k in range(n)}
        assert power(uniform, biased, 60 * n) > 0.999
    else:
        assert power(residue_classes(n, width), modulo_biased(n), 4000) > 0.999


# --- negative controls: the same tests, the same seeds, the mutants patched in -------------


class MutantStream(DeterministicStream):
    shuffle_impl = staticmethod(fisher_yates)

    def shuffle(self, items: list) -> None:
        type(self).shuffle_impl(items, self.below)


@negative_control
@pytest.mark.parametrize("name", sorted(SHUFFLE_MUTANTS))
def test_each_mutant_is_caught(monkeypatch, name):
    class Mutant(MutantStream):
        shuffle_impl = staticmethod(SHUFFLE_MUTANTS[name])

    monkeypatch.setattr(generator, "DeterministicStream", Mutant)
    failures = []
    for size in (4, 6):
        counts = block_orders(size, BLOCKS[size])
        if set(counts) != set(arrangements(size)) or rejects(counts, arrangements(size)):
            failures.append(f"orderings of {size}")
    for n in PERMUTATIONS:
        stream = Mutant(SEED, f"permutations|{n}")
        counts = Counter()
        for _ in range(PERMUTATIONS[n]):
            items = list(range(n))
            stream.shuffle(items)
            counts[tuple(items)] += 1
        expected = {p: 1 / math.factorial(n) for p in itertools.permutations(range(n))}
        if len(counts) != math.factorial(n) or rejects(counts, expected):
            failures.append(f"permutations of {n}")
    assert failures, name


@negative_control
def test_the_correct_shuffle_passes_the_controls(monkeypatch):
    """The control harness itself accepts the real algorithm (MutantStream = Fisher-Yates)."""
    monkeypatch.setattr(generator, "DeterministicStream", MutantStream)
    for size in (4, 6):
        assert not rejects(block_orders(size, BLOCKS[size]), arrangements(size))


@negative_control
@pytest.mark.parametrize("n", [192, 40000, 11_184_811])
def test_modulo_bias_is_caught(monkeypatch, n):
    def biased_below(self, k):
        width = (k.bit_length() + 7) // 8
        return int.from_bytes(self._bytes(width), "big") % k

    monkeypatch.setattr(drbg.DeterministicStream, "below", biased_below)
    if n < 256:
        with pytest.raises(AssertionError):
            test_below_is_uniform_for_awkward_n(n)
    else:
        with pytest.raises(AssertionError):
            test_below_has_no_modulo_bias_on_wide_draws(n)


@negative_control
def test_a_fixed_block_size_choice_is_caught(monkeypatch):
    monkeypatch.setattr(drbg.DeterministicStream, "choice", lambda self, items: items[0])
    with pytest.raises(AssertionError):
        test_block_sizes_are_drawn_uniformly()


# --- predictability, through the trial's own generator ---------------------------------------


def guesser_moments(size: int) -> tuple[Fraction, Fraction]:
    """Mean and variance of the convergence guesser's correct guesses in one block of
    ``size`` (1:1), exactly: over every ordering and every tie-break."""
    orders = arrangements(size)
    mean = Fraction(0)
    second = Fraction(0)
    for order in orders:
        # correct guesses are independent Bernoulli(1 / number of tied candidates)
        remaining = [size // 2, size // 2]
        hits = []
        for arm in order:
            best = max(remaining)
            candidates = [a for a, left in enumerate(remaining) if left == best]
            hits.append(Fraction(1, len(candidates)) if arm in candidates else Fraction(0))
            remaining[arm] -= 1
        m = sum(hits)
        v = sum(p * (1 - p) for p in hits)
        mean += m / len(orders)
        second += (v + m * m) / len(orders)
    return mean, second - mean * mean


def share_standard_error(sizes: tuple[int, ...], allocations: int) -> float:
    """Standard error of correct / allocated over whole blocks of sizes drawn uniformly from
    ``sizes`` (delta method for a ratio of sums over independent blocks)."""
    moments = {s: guesser_moments(s) for s in sizes}
    mean_size = Fraction(sum(sizes), len(sizes))
    share = sum(moments[s][0] for s in sizes) / len(sizes) / mean_size
    # Var(X - share * S) over one block, X correct guesses, S its size
    var = sum(moments[s][1] + (moments[s][0] - share * s) ** 2 for s in sizes) / len(sizes)
    blocks = allocations / float(mean_size)
    return math.sqrt(float(var) * blocks) / (blocks * float(mean_size))


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [((2,), 0.750), ((4,), 0.708), ((6,), 0.683), ((2, 4, 6), 0.703)],
)
def test_predictability_matches_the_closed_form(sizes, expected):
    closed = sum(s * expected_fixed_block_share(s) for s in sizes) / sum(sizes)
    assert closed == pytest.approx(expected, abs=0.0005)
    allocations = 60_000
    share = simulate_guess_share(sizes, (1, 1), allocations, SEED)
    tolerance = 4 * share_standard_error(sizes, allocations)
    assert tolerance < 0.01
    assert abs(share - closed) < tolerance, (share, closed, tolerance)


def test_guesser_moments_agree_with_the_closed_form():
    for size in (2, 4, 6):
        mean, _ = guesser_moments(size)
        assert float(mean) / size == pytest.approx(expected_fixed_block_share(size), abs=1e-12)


@negative_control
def test_predictability_runs_through_the_trials_generator(monkeypatch):
    """Negative control: with the block shuffle removed from the generator, the simulated
    share leaves the closed form (the old simulation, on Python's random, could not notice)."""

    class Unshuffled(DeterministicStream):
        def shuffle(self, items):
            pass

    monkeypatch.setattr(generator, "DeterministicStream", Unshuffled)
    with pytest.raises(AssertionError):
        test_predictability_matches_the_closed_form((4,), 0.708)


def test_a_random_generator_seeds_the_simulation():
    """``randomization summary`` passes a random.Random: it only draws the seed."""
    import random

    first = simulate_guess_share((2, 4, 6), (1, 1), 600, random.Random(5))
    assert first == simulate_guess_share((2, 4, 6), (1, 1), 600, random.Random(5).randbytes(32))
    assert 0.5 < first < 0.9
