"""The input of the blinding indices: the guesses of each true arm, counted.

A table is the counts of the answers by true arm, on the 3-answer form (the active drug, the
control, don't know) or Bang 2004's 5-answer form; ``tally`` counts stored answers into one.
The indices (``reports.blinding_bang``, ``reports.blinding_james``) only read these counts,
so a table refuses anything that is not a count when it is built, not when an index is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Guess categories, as the capture form is expected to store them (the engine itself only
# sees counts; ``tally`` maps stored answers onto them).
DONT_KNOW = "dont_know"
STRONGLY = "strongly"
SOMEWHAT = "somewhat"


@dataclass(frozen=True)
class ThreeCategory:
    """The guesses of the people of one true arm: the active drug, the control, don't know."""

    active: int
    control: int
    dont_know: int

    def __post_init__(self) -> None:
        _check_counts(self.active, self.control, self.dont_know)

    @property
    def total(self) -> int:
        return self.active + self.control + self.dont_know


@dataclass(frozen=True)
class FiveCategory:
    """The guesses of one true arm on Bang 2004's five-answer questionnaire."""

    strongly_active: int
    somewhat_active: int
    somewhat_control: int
    strongly_control: int
    dont_know: int

    def __post_init__(self) -> None:
        _check_counts(
            self.strongly_active,
            self.somewhat_active,
            self.somewhat_control,
            self.strongly_control,
            self.dont_know,
        )

    @property
    def total(self) -> int:
        return (
            self.strongly_active
            + self.somewhat_active
            + self.somewhat_control
            + self.strongly_control
            + self.dont_know
        )

    def collapsed(self) -> ThreeCategory:
        """Strongly + somewhat, per arm guessed (the 3-category table of the same answers)."""
        return ThreeCategory(
            active=self.strongly_active + self.somewhat_active,
            control=self.somewhat_control + self.strongly_control,
            dont_know=self.dont_know,
        )


ArmGuesses = ThreeCategory | FiveCategory


@dataclass(frozen=True)
class GuessTable:
    """Guesses by true arm: ``active`` (baclofen) and ``control`` (placebo), same form both."""

    active: ArmGuesses
    control: ArmGuesses

    def __post_init__(self) -> None:
        if type(self.active) is not type(self.control):
            raise TypeError("both arms must use the same form (3 or 5 categories)")

    @property
    def five_category(self) -> bool:
        return isinstance(self.active, FiveCategory)

    def collapsed(self) -> GuessTable:
        if isinstance(self.active, FiveCategory) and isinstance(self.control, FiveCategory):
            return GuessTable(self.active.collapsed(), self.control.collapsed())
        return self

    def swapped(self) -> GuessTable:
        """The same answers with the arms' labels exchanged (active <-> control, arms and
        guesses alike)."""
        return GuessTable(_mirror(self.control), _mirror(self.active))


def tally(
    answers: Iterable[tuple[str, str, str | None]],
    *,
    active: str = "baclofen",
    control: str = "placebo",
    five_category: bool = False,
) -> GuessTable:
    """Count answers ``(true arm, guess, confidence)`` into a table.

    ``guess`` is ``active``, ``control`` or ``"dont_know"``; ``confidence`` is ``"strongly"``
    or ``"somewhat"`` (used only when ``five_category``; then required for every guess that
    is not don't know) or None. Anything else raises ValueError: a table must count every
    answer it is given.
    """
    keys3 = {active: 0, control: 1, DONT_KNOW: 2}
    counts = {active: [0] * 5, control: [0] * 5}
    for true_arm, guess, confidence in answers:
        if true_arm not in counts:
            raise ValueError(f"unknown arm {true_arm!r}")
        if guess not in keys3:
            raise ValueError(f"unknown guess {guess!r}")
        if not five_category or guess == DONT_KNOW:
            column = keys3[guess] if not five_category else 4
        elif confidence == STRONGLY:
            column = 0 if guess == active else 3
        elif confidence == SOMEWHAT:
            column = 1 if guess == active else 2
        else:
            raise ValueError(f"a 5-category guess needs its confidence, not {confidence!r}")
        counts[true_arm][column] += 1
    if five_category:
        return GuessTable(FiveCategory(*counts[active]), FiveCategory(*counts[control]))
    return GuessTable(ThreeCategory(*counts[active][:3]), ThreeCategory(*counts[control][:3]))


def _check_counts(*counts: int) -> None:
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"a count must be a non-negative integer, not {count!r}")


def _mirror(guesses: ArmGuesses) -> ArmGuesses:
    if isinstance(guesses, ThreeCategory):
        return ThreeCategory(guesses.control, guesses.active, guesses.dont_know)
    return FiveCategory(
        guesses.strongly_control,
        guesses.somewhat_control,
        guesses.somewhat_active,
        guesses.strongly_active,
        guesses.dont_know,
    )
