"""Pocock-Simon minimization with a random element, every draw recorded for replay.

For a new participant, each arm is scored by the imbalance the trial would have if the
participant joined it: for every minimization factor, the range (max - min) over arms of the
ratio-weighted counts of participants sharing the newcomer's level; summed over factors. The
arm with the lowest score is preferred (ties broken by a recorded draw); it is taken with
probability ``probability_best`` (a second recorded draw), otherwise one of the other arms is
taken uniformly (a third recorded draw). A decision records the levels, the counts it saw,
the scores, the draws and the arm, so ``replay`` can check every decision from the first.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    levels: dict[str, str]
    counts: dict[str, list[int]]  # factor -> count per arm among same-level participants
    scores: list[float]
    preferred: int
    draws: tuple[float, float, float]
    probability_best: float
    arm: int

    def as_json(self) -> dict:
        return {
            "levels": self.levels,
            "counts": self.counts,
            "scores": self.scores,
            "preferred": self.preferred,
            "draws": list(self.draws),
            "probability_best": self.probability_best,
            "arm": self.arm,
        }

    @classmethod
    def from_json(cls, data: dict) -> Decision:
        return cls(
            levels=data["levels"],
            counts=data["counts"],
            scores=data["scores"],
            preferred=data["preferred"],
            draws=tuple(data["draws"]),
            probability_best=data["probability_best"],
            arm=data["arm"],
        )


def level_counts(
    history: list[tuple[dict[str, str], int]], levels: dict[str, str], arms: int
) -> dict[str, list[int]]:
    counts = {factor: [0] * arms for factor in levels}
    for past_levels, arm in history:
        for factor, level in levels.items():
            if past_levels.get(factor) == level:
                counts[factor][arm] += 1
    return counts


def scores_for(counts: dict[str, list[int]], ratio: tuple[int, ...]) -> list[float]:
    scores = []
    for candidate in range(len(ratio)):
        total = 0.0
        for per_arm in counts.values():
            weighted = [(n + (arm == candidate)) / ratio[arm] for arm, n in enumerate(per_arm)]
            total += max(weighted) - min(weighted)
        scores.append(round(total, 12))
    return scores


def choose(
    scores: list[float], draws: tuple[float, float, float], probability_best: float
) -> tuple[int, int]:
    """Return (preferred, arm) from the scores and three uniform draws in [0, 1)."""
    best = min(scores)
    tied = [arm for arm, score in enumerate(scores) if score == best]
    preferred = tied[int(draws[0] * len(tied))]
    if draws[1] < probability_best or len(scores) == 1:
        return preferred, preferred
    others = [arm for arm in range(len(scores)) if arm != preferred]
    return preferred, others[int(draws[2] * len(others))]


def decide(
    history: list[tuple[dict[str, str], int]],
    levels: dict[str, str],
    ratio: tuple[int, ...],
    probability_best: float,
    draws: tuple[float, float, float] | None = None,
) -> Decision:
    if draws is None:
        system = secrets.SystemRandom()
        draws = (system.random(), system.random(), system.random())
    counts = level_counts(history, levels, len(ratio))
    scores = scores_for(counts, ratio)
    preferred, arm = choose(scores, draws, probability_best)
    return Decision(levels, counts, scores, preferred, draws, probability_best, arm)


def replay(decisions: list[Decision], ratio: tuple[int, ...]) -> list[str]:
    """Re-derive every decision from its predecessors and draws; return the problems."""
    problems, history = [], []
    for number, decision in enumerate(decisions, start=1):
        again = decide(history, decision.levels, ratio, decision.probability_best, decision.draws)
        if again != decision:
            problems.append(
                f"decision {number} does not follow from the decisions before it "
                f"and its recorded draws"
            )
        history.append((decision.levels, decision.arm))
    return problems
