"""Derived drinking outcomes, checked against a second computation written differently.

The product sums running totals over the streamed calendar; the reference below walks the rows
day by day in plain loops with exact fractions. Both must agree on a demo trial and on
hand-made edge cases: missing days, a period with no assessed day, the sex thresholds.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tests.capture_helpers import Trial, calendar, iso, today
from trial.extensions import db
from trial.forms.models import DrinkingDay
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.visits.models import Visit

TREATMENT_DAYS = 168


def rounded(value: Fraction | None) -> str:
    if value is None:
        return ""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    text = str(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
    return repr(float(text))


def who_level(grams: Fraction | None, sex: str) -> str:
    if grams is None:
        return ""
    if grams == 0:
        return "abstinent"
    protocol = current_protocol()
    for level in protocol.who_risk_levels:
        if grams <= level[sex]:
            return level["level"]
    return "very high"


def reference_outcomes(cutoff_day: date) -> dict[tuple[str, str], dict[str, str]]:
    """Every participant's periods, by loops over the stored rows (no export code)."""
    protocol = current_protocol()
    threshold = protocol.heavy_drinking_threshold
    grams = Fraction(str(protocol.standard_drink_grams))
    drinks_on = defaultdict(dict)
    for row in db.session.scalars(
        select(DrinkingDay).where(DrinkingDay.entered_in_error.is_(False))
    ):
        drinks_on[row.participant_id][row.day] = Fraction(str(row.standard_drinks))
    screening = {}
    for visit in db.session.scalars(
        select(Visit).where(Visit.entered_in_error.is_(False), Visit.visit_code == "screening")
    ):
        if visit.status == "completed":
            screening[visit.participant_id] = visit.visit_date
    expected = {}
    for p in db.session.scalars(select(Participant)):
        day0 = None
        if p.randomized_at is not None:
            day0 = p.randomized_at.astimezone(ZoneInfo(p.site.timezone)).date()
        windows = []
        anchor = screening.get(p.id) or day0
        if anchor is not None:
            windows.append(("baseline", anchor - timedelta(28), anchor - timedelta(1)))
        if day0 is not None:
            month = 1
            first = 1
            while first <= TREATMENT_DAYS:
                last = min(first + 27, TREATMENT_DAYS)
                windows.append((f"month_{month}", day0 + timedelta(first), day0 + timedelta(last)))
                month += 1
                first += 28
            windows.append(("treatment", day0 + timedelta(1), day0 + timedelta(TREATMENT_DAYS)))
        for name, start, end in windows:
            if start > cutoff_day:
                continue
            end = min(end, cutoff_day)
            length = (end - start).days + 1
            assessed = heavy = dry = drinking_days = 0
            total = Fraction(0)
            day = start
            while day <= end:
                if day in drinks_on[p.id]:
                    drinks = drinks_on[p.id][day]
                    assessed += 1
                    total += drinks
                    if drinks >= threshold[p.sex]:
                        heavy += 1
                    if drinks == 0:
                        dry += 1
                    else:
                        drinking_days += 1
                day += timedelta(1)
            per_day = total * grams / assessed if assessed else None
            per_day_rounded = Fraction(Decimal(rounded(per_day))) if per_day is not None else None
            expected[(p.participant_id, name)] = {
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "days_in_period": str(length),
                "days_assessed": str(assessed),
                "days_missing": str(length - assessed),
                "pct_heavy_drinking_days": rounded(Fraction(100 * heavy, assessed))
                if assessed
                else "",
                "pct_days_abstinent": rounded(Fraction(100 * dry, assessed)) if assessed else "",
                "drinks_per_drinking_day": rounded(total / drinking_days) if drinking_days else "",
                "grams_per_day": rounded(per_day),
                "who_risk_level": who_level(per_day_rounded, p.sex),
            }
    return expected


def exported_outcomes(runner, tmp_path, user: str) -> dict[tuple[str, str], dict[str, str]]:
    out = tmp_path / "bundle.zip"
    result = runner.invoke(args=["exports", "blinded", "--as", user, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        text = archive.read("drinking_outcomes.csv").decode("utf-8")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    return {(r.pop("participant_id"), r.pop("period")): r for r in rows}


def test_outcomes_agree_with_a_loop_over_the_calendar_on_a_demo_trial(app, runner, tmp_path):
    result = runner.invoke(args=["trial", "demo", "--participants", "40", "--seed", "11"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    exported = exported_outcomes(runner, tmp_path, "statistician")
    expected = reference_outcomes(today())
    assert exported.keys() == expected.keys()
    for key, row in expected.items():
        assert exported[key] == row, key
    # Not vacuous: the demo covers drinking, abstinence and missing days.
    assert {r["who_risk_level"] for r in expected.values()} >= {"very high", "low"}
    assert any(int(r["days_missing"]) > 0 for r in expected.values())
    assert any(r["pct_days_abstinent"] not in ("", "0.0") for r in expected.values())


def test_edge_cases_missing_days_empty_periods_and_sex_thresholds(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    trial = Trial(client, make_site, make_user, make_participant)
    woman = trial.enrol(sex="F", day0_ago=40, screening_drinking=True)
    man = trial.enrol(sex="M", day0_ago=40)
    # Four drinks every day: heavy for a woman (threshold 4), not for a man (threshold 5).
    # Week 1 covers days 1-6 only for the woman; nothing at all for the man in month 1, and
    # for both the days after the last visit are missing.
    for p, drinks in ((woman, 4.0), (man, 4.0)):
        body = {"drinking": calendar(p.day0 + timedelta(1), p.day0 + timedelta(6), drinks=drinks)}
        if p is man:
            body = {}
        response = trial.visit(p.pid, "titration_w1", p.day0 + timedelta(7), **body)
        assert response.status_code == 201, response.json
    make_user("statistician", username="stat")
    exported = exported_outcomes(runner, tmp_path, "stat")
    assert exported == reference_outcomes(today())

    month_1 = exported[(woman.pid, "month_1")]
    assert month_1["days_in_period"] == "28" and month_1["days_assessed"] == "6"
    assert month_1["days_missing"] == "22"
    assert month_1["pct_heavy_drinking_days"] == "100.0"
    assert month_1["grams_per_day"] == "56.0" and month_1["who_risk_level"] == "high"
    baseline = exported[(woman.pid, "baseline")]
    assert baseline["days_assessed"] == "28" and baseline["days_missing"] == "0"
    assert baseline["period_end"] == iso(woman.screening_date - timedelta(1))

    empty = exported[(man.pid, "month_1")]
    assert empty["days_assessed"] == "0" and empty["days_missing"] == "28"
    for field in ("pct_heavy_drinking_days", "pct_days_abstinent", "grams_per_day"):
        assert empty[field] == ""
    # Month 2 is cut at the cut-off date (day 40): 12 days so far, none assessed.
    assert exported[(man.pid, "month_2")]["days_in_period"] == "12"
    assert (man.pid, "month_3") not in exported  # not started by the cut-off


def test_the_sex_threshold_decides_heavy(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    trial = Trial(client, make_site, make_user, make_participant)
    pair = [trial.enrol(sex=sex, day0_ago=20) for sex in ("F", "M")]
    for p in pair:
        days = calendar(p.day0 + timedelta(1), p.day0 + timedelta(6), drinks=4.0)
        days += calendar(p.day0 + timedelta(7), p.day0 + timedelta(7), drinks=5.0)
        response = trial.visit(p.pid, "titration_w1", p.day0 + timedelta(8), drinking=days)
        assert response.status_code == 201, response.json
    make_user("statistician", username="stat")
    exported = exported_outcomes(runner, tmp_path, "stat")
    woman, man = (exported[(p.pid, "month_1")] for p in pair)
    assert woman["pct_heavy_drinking_days"] == "100.0"  # 7 of 7 days at >= 4
    assert man["pct_heavy_drinking_days"] == repr(round(100 / 7, 4))  # 1 of 7 days at >= 5
