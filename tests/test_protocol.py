"""The protocol file: the shipped one loads as DESIGN section 3 says; bad ones are refused.

No database is needed: the protocol is validated before the app touches one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from tests.conftest import make_config
from trial import create_app
from trial.errors import ConfigurationError
from trial.protocol.loader import load_protocol

SHIPPED = PROJECT_ROOT / "trial" / "protocol.toml"
SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")


def variant(tmp_path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    """Write the shipped protocol with each (old, new) replaced exactly once."""
    text = SHIPPED_TEXT
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} must occur exactly once in the shipped file"
        text = text.replace(old, new)
    path = tmp_path / "protocol.toml"
    path.write_text(text + append, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigurationError) as excinfo:
        load_protocol(path)
    return str(excinfo.value)


def test_shipped_protocol_loads_with_design_defaults():
    protocol = load_protocol(SHIPPED)
    assert protocol.arms == ("baclofen", "placebo")
    assert protocol.ratio == (1, 1)
    assert protocol.block_sizes == (2, 4, 6)
    assert protocol.strata == ("site", "sex")
    assert protocol.randomization_method == "blocks"
    assert protocol.list_margin >= 0.20
    assert (protocol.min_age, protocol.max_age) == (18, 70)
    assert protocol.heavy_drinking_threshold == {"F": 4, "M": 5}
    assert protocol.standard_drink_grams == 14
    assert protocol.dosing["tablet_strength_mg"] == 20
    assert protocol.dosing["max_tablets_per_day"] == 9
    days = [visit.day for visit in protocol.visits]
    assert days == sorted(days)
    assert protocol.visit("baseline").day == 0
    assert protocol.visits[0].code == "screening"
    assert (protocol.visit("screening").earliest_day, protocol.visit("screening").latest_day) == (
        -28,
        -1,
    )
    assert (protocol.visit("week_8").earliest_day, protocol.visit("week_8").latest_day) == (51, 61)
    assert protocol.visit("follow_up").day == 210
    assert len({visit.code for visit in protocol.visits}) == len(protocol.visits)
    with pytest.raises(KeyError):
        protocol.visit("no_such_visit")


def test_app_exposes_the_loaded_protocol(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "instance"))
    from trial.protocol import current_protocol

    with app.app_context():
        assert current_protocol().arms == ("baclofen", "placebo")
        assert current_protocol().source == str(SHIPPED)


BAD_VARIANTS = {
    "ratio_length_mismatch": ([("ratio = [1, 1]", "ratio = [1, 1, 1]")], ["arms.ratio"]),
    "ratio_zero": ([("ratio = [1, 1]", "ratio = [1, 0]")], ["arms.ratio"]),
    "negative_max_age": ([("max_age = 70", "max_age = -1")], ["eligibility.max_age"]),
    "min_age_above_max_age": ([("min_age = 18", "min_age = 80")], ["eligibility.min_age"]),
    "unknown_key": (
        [
            (
                "planned_enrollment_per_site = 100",
                "planned_enrollment_per_site = 100\nshoe_size = 44",
            )
        ],
        ["trial.shoe_size"],
    ),
    "unknown_section": ([], ["colour"]),
    "visits_unsorted": (
        [
            (
                'code = "titration_w1"\nlabel = "Titration week 1"\nday = 7',
                'code = "titration_w1"\nlabel = "Titration week 1"\nday = 100',
            )
        ],
        ["visits"],
    ),
    "duplicate_visit_codes": ([('code = "titration_w2"', 'code = "titration_w1"')], ["visits"]),
    "no_day_zero_visit": (
        [
            (
                'label = "Baseline (randomization)"\nday = 0',
                'label = "Baseline (randomization)"\nday = 1',
            )
        ],
        ["visits"],
    ),
    "list_margin_below_20_percent": (
        [("list_margin = 0.20", "list_margin = 0.19")],
        ["randomization.list_margin"],
    ),
    "missing_required_setting": (
        [("standard_drink_grams = 14\n", "")],
        ["drinking.standard_drink_grams"],
    ),
    "string_for_integer": ([("max_age = 70", 'max_age = "70"')], ["eligibility.max_age"]),
    # The drinking outcomes' conventions (issue 26).
    "heavy_by_unknown_rule": (
        [('heavy_drinking_by = "drinks"', 'heavy_drinking_by = "units"')],
        ["drinking.heavy_drinking_by"],
    ),
    "heavy_by_grams_without_grams": (
        [
            ('heavy_drinking_by = "drinks"', 'heavy_drinking_by = "grams"'),
            ("heavy_drinking_grams = { F = 40, M = 60 }", ""),
        ],
        ["drinking.heavy_drinking_grams"],
    ),
    "heavy_grams_zero": (
        [("heavy_drinking_grams = { F = 40, M = 60 }", "heavy_drinking_grams = { F = 0, M = 60 }")],
        ["drinking.heavy_drinking_grams.F"],
    ),
    "site_grams_negative": (
        [("{ S01 = 10, S02 = 10 }", "{ S01 = -10, S02 = 10 }")],
        ["drinking.standard_drink_grams_by_site"],
    ),
    "site_grams_not_a_number": (
        [("{ S01 = 10, S02 = 10 }", '{ S01 = "ten", S02 = 10 }')],
        ["drinking.standard_drink_grams_by_site"],
    ),
    "site_code_too_long": (
        [("{ S01 = 10, S02 = 10 }", "{ S01_PARIS_NORD = 10, S02 = 10 }")],
        ["drinking.standard_drink_grams_by_site"],
    ),
    "min_assessed_days_zero": (
        [("min_assessed_days = 7", "min_assessed_days = 0")],
        ["drinking.min_assessed_days"],
    ),
    "min_assessed_days_above_a_month": (
        [("min_assessed_days = 7", "min_assessed_days = 29")],
        ["drinking.min_assessed_days"],
    ),
    "min_assessed_days_above_baseline": (
        [
            ("min_assessed_days = 7", "min_assessed_days = 20"),
            ("baseline_days = 28", "baseline_days = 14"),
        ],
        ["drinking.min_assessed_days"],
    ),
    "min_assessed_days_fractional": (
        [("min_assessed_days = 7", "min_assessed_days = 7.5")],
        ["drinking.min_assessed_days"],
    ),
    "min_assessed_share_above_one": (
        [("min_assessed_share = 0.5", "min_assessed_share = 1.5")],
        ["drinking.min_assessed_share"],
    ),
    "min_assessed_share_negative": (
        [("min_assessed_share = 0.5", "min_assessed_share = -0.1")],
        ["drinking.min_assessed_share"],
    ),
}


def test_shipped_outcome_conventions():
    """Heavy by drinks (4/5), grams as an option (> 40 / > 60 g), 10 g at the French sites
    and 14 g elsewhere, percentages from 7 assessed days and half the collectable days."""
    protocol = load_protocol(SHIPPED)
    assert protocol.heavy_drinking_by == "drinks"
    assert protocol.heavy_drinking_grams == {"F": 40, "M": 60}
    assert protocol.standard_drink_grams_by_site == {"S01": 10, "S02": 10}
    assert (protocol.grams_per_drink("S01"), protocol.grams_per_drink("S03")) == (10, 14)
    assert (protocol.min_assessed_days, protocol.min_assessed_share) == (7, 0.5)


def test_outcome_conventions_default_when_absent(tmp_path):
    """A protocol file written before issue 26 loads with the documented defaults."""
    path = variant(
        tmp_path,
        ("standard_drink_grams_by_site = { S01 = 10, S02 = 10 }\n", ""),
        ('heavy_drinking_by = "drinks"\n', ""),
        ("heavy_drinking_grams = { F = 40, M = 60 }", ""),
        ("min_assessed_days = 7\n", ""),
        ("min_assessed_share = 0.5\n", ""),
    )
    protocol = load_protocol(path)
    assert protocol.heavy_drinking_by == "drinks" and protocol.heavy_drinking_grams is None
    assert protocol.standard_drink_grams_by_site == {}
    assert protocol.grams_per_drink("S01") == 14
    assert (protocol.min_assessed_days, protocol.min_assessed_share) == (7, 0.5)


def test_heavy_by_grams_loads(tmp_path):
    path = variant(tmp_path, ('heavy_drinking_by = "drinks"', 'heavy_drinking_by = "grams"'))
    protocol = load_protocol(path)
    assert protocol.heavy_drinking_by == "grams"
    assert protocol.heavy_drinking_grams == {"F": 40, "M": 60}


@pytest.mark.parametrize("name", sorted(BAD_VARIANTS))
def test_bad_setting_is_refused_and_named(tmp_path, name):
    replacements, named = BAD_VARIANTS[name]
    append = "\n[colour]\nshade = 'blue'\n" if name == "unknown_section" else ""
    path = variant(tmp_path, *replacements, append=append)
    message = refusal(path)
    assert str(path) in message
    for setting in named:
        assert re.search(rf"(^|[ ;:]){re.escape(setting)}\b", message), message


def test_every_bad_setting_is_named_at_once(tmp_path):
    path = variant(
        tmp_path,
        ("ratio = [1, 1]", "ratio = [1, 1, 1]"),
        ("list_margin = 0.20", "list_margin = 0.10"),
        ("max_age = 70", "max_age = -5"),
        ('code = "titration_w2"', 'code = "titration_w1"'),
    )
    message = refusal(path)
    for setting in ("arms.ratio", "randomization.list_margin", "eligibility.max_age", "visits"):
        assert setting in message, message
    assert "unique" in message, message


def test_bad_visit_entry_is_named_by_position(tmp_path):
    path = variant(tmp_path, ('code = "week_8"', 'code = "Week 8!"'))
    message = refusal(path)
    assert "visits.9.code" in message, message


def test_invalid_toml_is_refused(tmp_path):
    path = tmp_path / "protocol.toml"
    path.write_text(SHIPPED_TEXT + "\nthis is = = not toml\n", encoding="utf-8")
    message = refusal(path)
    assert "not valid TOML" in message and str(path) in message


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nowhere.toml"
    message = refusal(path)
    assert "does not exist" in message and str(path) in message


@pytest.mark.parametrize(
    ("ratio", "block_sizes"),
    [
        ("[2, 1]", (3, 6, 9)),
        ("[3, 2]", (5, 10, 15)),
    ],
)
def test_block_sizes_are_multiples_of_the_ratio_sum(tmp_path, ratio, block_sizes):
    path = variant(tmp_path, ("ratio = [1, 1]", f"ratio = {ratio}"))
    protocol = load_protocol(path)
    assert protocol.block_sizes == block_sizes
    assert all(size % sum(protocol.ratio) == 0 for size in protocol.block_sizes)


def test_three_arms_with_a_matching_ratio_load(tmp_path):
    path = variant(
        tmp_path,
        ('names = ["baclofen", "placebo"]', 'names = ["high", "low", "placebo"]'),
        ("ratio = [1, 1]", "ratio = [1, 1, 2]"),
    )
    protocol = load_protocol(path)
    assert protocol.arms == ("high", "low", "placebo")
    assert protocol.block_sizes == (4, 8, 12)


def test_create_app_refuses_a_bad_protocol_file(tmp_path):
    path = variant(tmp_path, ("list_margin = 0.20", "list_margin = 0.05"))
    config = make_config(
        f"sqlite:///{tmp_path / 'never.db'}", tmp_path / "instance", PROTOCOL_FILE=str(path)
    )
    with pytest.raises(ConfigurationError, match=r"randomization\.list_margin"):
        create_app(config)
    assert not (tmp_path / "never.db").exists()


def test_create_app_refuses_a_missing_protocol_file(tmp_path):
    config = make_config(
        f"sqlite:///{tmp_path / 'never.db'}",
        tmp_path / "instance",
        PROTOCOL_FILE=str(tmp_path / "missing.toml"),
    )
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_app(config)
