"""A protocol value has one home, the protocol file: change it there and every consumer follows.

Each test runs the app on a variant of the shipped protocol and checks each place that uses
the value: the validation of a visit's body, a correction, the bundle's data dictionary, the
derivation texts. A consumer that still wrote the number itself would keep the shipped value
and fail here, so each variant is also the negative control that the rule is not hard-coded
anywhere any more. The drinks limit may be raised above the shipped 60 as far as the
database's own guard (``DRINKS_PER_DAY_CEILING``), which the database still enforces.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tests.capture_helpers import Trial, counts, iso
from tests.test_exports_bundle import export, now_cutoff, table
from tests.test_protocol import variant
from trial.extensions import db
from trial.forms.models import DrinkingDay
from trial.protocol import DRINKS_PER_DAY_CEILING, current_protocol

D = timedelta(days=1)
SHIPPED_LIMIT = "max_drinks_per_day = 60"
SHIPPED_BASELINE = "baseline_days = 28"


@pytest.fixture
def config_overrides(request, tmp_path) -> dict:
    """The shipped protocol with the (old, new) replacements of the test's parameter."""
    replacements = getattr(request, "param", ())
    if not replacements:
        return {}
    return {"PROTOCOL_FILE": str(variant(tmp_path, *replacements))}


def limit_of(limit: int):
    return [((SHIPPED_LIMIT, f"max_drinks_per_day = {limit}"),)]


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def screening_with(trial: Trial, drinks: float):
    """A participant's screening visit with one calendar day of ``drinks``."""
    p = trial.enrol(day0_ago=None, screening=False)
    day = {"date": iso(p.screening_date - D), "standard_drinks": drinks}
    return p, trial.visit(p.pid, "screening", p.screening_date, drinking=[day])


def dictionary_entry(runner, tmp_path, make_user, file: str, variable: str) -> dict:
    make_user("statistician", username="statistician")
    files = zipfile.ZipFile(io.BytesIO(export(runner, tmp_path, "--cutoff", now_cutoff())))
    contents = {name: files.read(name) for name in files.namelist()}
    (entry,) = [
        row
        for row in table(contents, "dictionary.csv")
        if row["file"] == f"{file}.csv" and row["variable"] == variable
    ]
    return entry


# --- the drinks limit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_overrides", "limit"),
    [((), 60), *((limit_of(n)[0], n) for n in (40, 80, DRINKS_PER_DAY_CEILING))],
    indirect=["config_overrides"],
    ids=["shipped-60", "lowered-40", "raised-80", "ceiling"],
)
def test_the_protocol_sets_the_drinks_limit_everywhere(
    trial, runner, tmp_path, make_user, config_overrides, limit
):
    assert current_protocol().max_drinks_per_day == limit
    # Validation of a visit: the limit itself is accepted (and stored: the database's guard
    # is wider), a quarter drink more is refused, named, with the limit in the message.
    p, accepted = screening_with(trial, limit)
    assert accepted.status_code == 201, accepted.json
    assert accepted.json["drinking"][0]["standard_drinks"] == limit
    before = counts()
    _, refused = screening_with(trial, limit + 0.25)
    assert refused.status_code == 422, refused.json
    assert refused.json["errors"]["drinking.0.standard_drinks"] == [
        f"Standard drinks must be between 0 and {limit}."
    ]
    assert counts()["drinking_days"] == before["drinking_days"]
    # A correction of the day is held to the same limit.
    row = accepted.json["drinking"][0]["id"]
    lower = trial.patch(f"/drinking-days/{row}", {"standard_drinks": limit - 1, "reason": "x"})
    assert lower.status_code == 200, lower.json
    above = trial.patch(f"/drinking-days/{row}", {"standard_drinks": limit + 1, "reason": "x"})
    assert above.status_code == 422 and "standard_drinks" in above.json["errors"], above.json
    # The bundle's data dictionary states the same range.
    entry = dictionary_entry(runner, tmp_path, make_user, "drinking_calendar", "standard_drinks")
    assert entry["allowed_values"] == f"0-{limit}"


@pytest.mark.parametrize("config_overrides", limit_of(DRINKS_PER_DAY_CEILING), indirect=True)
def test_the_database_guards_the_drinks_range_past_any_protocol(trial, config_overrides):
    """The last guard: whatever the service lets through, the database refuses a day above
    ``DRINKS_PER_DAY_CEILING`` or below 0 (its CHECK, migration 0011)."""
    _, accepted = screening_with(trial, DRINKS_PER_DAY_CEILING)
    assert accepted.status_code == 201, accepted.json
    row = db.session.scalar(select(DrinkingDay.id))
    for bad in (DRINKS_PER_DAY_CEILING + 0.5, -1):
        with pytest.raises(IntegrityError):
            db.session.execute(
                update(DrinkingDay).where(DrinkingDay.id == row).values(standard_drinks=bad)
            )
            db.session.flush()
        db.session.rollback()


def test_a_protocol_cannot_set_a_limit_past_the_databases_guard(tmp_path):
    from tests.test_protocol import refusal

    path = variant(tmp_path, (SHIPPED_LIMIT, f"max_drinks_per_day = {DRINKS_PER_DAY_CEILING + 1}"))
    assert "drinking.max_drinks_per_day" in refusal(path)


# --- the baseline period ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_overrides", "days"),
    [((), 28), (((SHIPPED_BASELINE, "baseline_days = 14"),), 14)],
    indirect=["config_overrides"],
    ids=["shipped-28", "variant-14"],
)
def test_the_protocol_sets_the_baseline_period_in_the_outcomes_and_their_derivation(
    trial, runner, tmp_path, make_user, config_overrides, days
):
    p = trial.enrol(day0_ago=40)
    entry = dictionary_entry(runner, tmp_path, make_user, "drinking_outcomes", "period")
    assert entry["derivation"].startswith(f"baseline: the {days} days before screening ")
    assert "study days 28(k-1)+1 to 28k" in entry["derivation"]  # months of 4 weeks
    assert entry["allowed_values"] == "baseline, month_1 ... month_6, treatment"
    files = zipfile.ZipFile(io.BytesIO(export(runner, tmp_path, name="again.zip")))
    contents = {name: files.read(name) for name in files.namelist()}
    (baseline,) = [
        row
        for row in table(contents, "drinking_outcomes.csv")
        if row["participant_id"] == p.pid and row["period"] == "baseline"
    ]
    assert baseline["days_in_period"] == str(days)
    assert baseline["period_end"] == iso(p.screening_date - D)
