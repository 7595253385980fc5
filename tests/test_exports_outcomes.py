"""Derived drinking outcomes, checked against a second computation written differently.

The product sums running totals over the streamed calendar; the reference below walks the rows
day by day in plain loops with exact fractions. Both must agree on a demo trial and on
hand-made edge cases: missing days, a period with no assessed day, the sex thresholds.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tests.capture_helpers import Trial, calendar, iso, today
from trial.conduct.models import Disposition
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


FINAL = ("screen_failure", "completed", "withdrew", "lost_to_follow_up", "death")


def reference_collectable_until(
    protocol, day0: date | None, cutoff_day: date, final: date | None, last_visit: date | None
) -> date | None:
    """The last collectable day, walked day by day: a final disposition's date; else the day
    before the latest calendar visit recorded or whose window closed before the cut-off."""
    if final is not None:
        return min(final, cutoff_day)
    if day0 is None:
        return None
    due = day0
    day = day0
    while day < cutoff_day:
        for visit in protocol.visits:
            if visit.day > 0 and "drinking" in visit.forms:
                closes = day0 + timedelta(visit.day + visit.window_after)
                if closes == day:  # closed before the cut-off day
                    due = max(due, day0 + timedelta(visit.day))
        day += timedelta(1)
    if last_visit is not None and last_visit > due:
        due = last_visit
    return min(due - timedelta(1), cutoff_day)


def reference_outcomes(cutoff_day: date) -> dict[tuple[str, str], dict[str, str]]:
    """Every participant's periods, by loops over the stored rows (no export code).

    Issue 26 changed the truth: days after the last possible collection are neither assessed
    nor missing; a period below the minimum of assessed days (7, and half of its collectable
    days) is empty with its reason; grams per standard drink by site (10 g at the French
    sites); a heavy day by drinks or by grams as the protocol says."""
    protocol = current_protocol()
    threshold = protocol.heavy_drinking_threshold
    by_grams = protocol.heavy_drinking_by == "grams"
    over = protocol.heavy_drinking_grams
    site_grams = protocol.standard_drink_grams_by_site or {}
    minimum = protocol.min_assessed_days
    share = Fraction(str(protocol.min_assessed_share))
    drinks_on = defaultdict(dict)
    for row in db.session.scalars(
        select(DrinkingDay).where(DrinkingDay.entered_in_error.is_(False))
    ):
        drinks_on[row.participant_id][row.day] = Fraction(str(row.standard_drinks))
    screening = {}
    last_visit = {}
    calendar_visits = {v.code for v in protocol.visits if "drinking" in v.forms}
    for visit in db.session.scalars(select(Visit).where(Visit.entered_in_error.is_(False))):
        if visit.status != "completed":
            continue
        if visit.visit_code == "screening":
            screening[visit.participant_id] = visit.visit_date
        if visit.visit_code in calendar_visits:
            before = last_visit.get(visit.participant_id)
            if before is None or visit.visit_date > before:
                last_visit[visit.participant_id] = visit.visit_date
    final = {}
    for row in db.session.scalars(
        select(Disposition).where(Disposition.entered_in_error.is_(False))
    ):
        if row.status in FINAL:
            final[row.participant_id] = row.date
    expected = {}
    for p in db.session.scalars(select(Participant)):
        grams = Fraction(str(site_grams.get(p.site.code, protocol.standard_drink_grams)))
        day0 = None
        if p.randomized_at is not None:
            day0 = p.randomized_at.astimezone(ZoneInfo(p.site.timezone)).date()
        until = reference_collectable_until(
            protocol, day0, cutoff_day, final.get(p.id), last_visit.get(p.id)
        )
        if until is not None and drinks_on[p.id]:
            until = max(until, max(drinks_on[p.id]))
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
            assessed = heavy = dry = drinking_days = collectable = 0
            total = Fraction(0)
            day = start
            while day <= end:
                if name == "baseline" or until is None or day <= until:
                    collectable += 1
                if day in drinks_on[p.id]:
                    drinks = drinks_on[p.id][day]
                    assessed += 1
                    total += drinks
                    if by_grams:
                        day_grams = Fraction(Decimal(rounded(drinks * grams)))
                        heavy += day_grams > over[p.sex]
                    elif drinks >= threshold[p.sex]:
                        heavy += 1
                    if drinks == 0:
                        dry += 1
                    else:
                        drinking_days += 1
                day += timedelta(1)
            if collectable == 0:
                reason = "no collectable day"
            elif assessed == 0:
                reason = "no assessed day"
            elif assessed < minimum:
                reason = f"too few assessed days: {assessed} < {minimum}"
            elif Fraction(assessed, collectable) < share:
                reason = (
                    f"too few of the collectable days assessed: {assessed}/{collectable} < "
                    f"{float(share):.0%}"
                )
            else:
                reason = ""
            given = not reason
            per_day = total * grams / assessed if given else None
            per_day_rounded = Fraction(Decimal(rounded(per_day))) if per_day is not None else None
            expected[(p.participant_id, name)] = {
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "days_in_period": str(length),
                "days_assessed": str(assessed),
                "days_missing": str(collectable - assessed),
                "pct_heavy_drinking_days": rounded(Fraction(100 * heavy, assessed))
                if given
                else "",
                "pct_days_abstinent": rounded(Fraction(100 * dry, assessed)) if given else "",
                "drinks_per_drinking_day": rounded(total / drinking_days)
                if given and drinking_days
                else "",
                "grams_per_day": rounded(per_day),
                "who_risk_level": who_level(per_day_rounded, p.sex),
                "days_not_collectable": str(length - collectable),
                "empty_reason": reason,
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

    # Issue 26 changed this deliberately: 6 assessed days were 100% heavy and 56 g/day; now
    # 6 < 7 assessed days leave the month empty with its reason.
    month_1 = exported[(woman.pid, "month_1")]
    assert month_1["days_in_period"] == "28" and month_1["days_assessed"] == "6"
    assert month_1["days_missing"] == "22" and month_1["days_not_collectable"] == "0"
    assert month_1["pct_heavy_drinking_days"] == "" and month_1["grams_per_day"] == ""
    assert month_1["empty_reason"] == "too few assessed days: 6 < 7"
    baseline = exported[(woman.pid, "baseline")]
    assert baseline["days_assessed"] == "28" and baseline["days_missing"] == "0"
    assert baseline["period_end"] == iso(woman.screening_date - timedelta(1))
    # 28 days of 2 drinks at a French site (10 g): 20 g/day, low for a woman
    assert baseline["grams_per_day"] == "20.0" and baseline["who_risk_level"] == "low"
    assert baseline["empty_reason"] == ""

    empty = exported[(man.pid, "month_1")]
    assert empty["days_assessed"] == "0" and empty["days_missing"] == "28"
    assert empty["empty_reason"] == "no assessed day"
    for field in ("pct_heavy_drinking_days", "pct_days_abstinent", "grams_per_day"):
        assert empty[field] == ""
    # Month 2 is cut at the cut-off date (day 40): 12 days so far. The week-5 visit (day 35,
    # window closed on day 37) is due, so days 29-34 are collectable and missing; days 35-40
    # await the week-6 visit: neither assessed nor missing (they were counted missing).
    month_2 = exported[(man.pid, "month_2")]
    assert month_2["days_in_period"] == "12"
    assert month_2["days_not_collectable"] == "6" and month_2["days_missing"] == "6"
    assert (man.pid, "month_3") not in exported  # not started by the cut-off


def test_a_withdrawn_participants_days_after_withdrawal_are_not_missing(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    """Withdrew on day 16 with days 1-9 on the calendar: month 1 has 16 collectable days (9
    assessed, 7 missing), 12 not collectable; month 2 has no collectable day at all."""
    trial = Trial(client, make_site, make_user, make_participant)
    p = trial.enrol(sex="M", day0_ago=40, screening_drinking=True)
    body = {"drinking": calendar(p.day0 + timedelta(1), p.day0 + timedelta(6), drinks=0.0)}
    assert trial.visit(p.pid, "titration_w1", p.day0 + timedelta(7), **body).status_code == 201
    more = {"drinking": calendar(p.day0 + timedelta(7), p.day0 + timedelta(9), drinks=6.0)}
    assert trial.visit(p.pid, "titration_w2", p.day0 + timedelta(14), **more).status_code == 201
    withdrawal = {"status": "withdrew", "date": iso(p.day0 + timedelta(16)), "reason": "moved"}
    assert trial.post(f"/participants/{p.pid}/disposition", withdrawal).status_code == 201
    make_user("statistician", username="stat")
    exported = exported_outcomes(runner, tmp_path, "stat")
    assert exported == reference_outcomes(today())
    month_1 = exported[(p.pid, "month_1")]
    assert (month_1["days_assessed"], month_1["days_missing"]) == ("9", "7")
    assert month_1["days_not_collectable"] == "12"  # was: 19 days missing
    assert month_1["empty_reason"] == ""
    assert month_1["pct_heavy_drinking_days"] == repr(round(100 * 3 / 9, 4))  # 6 drinks >= 5
    assert month_1["pct_days_abstinent"] == repr(round(100 * 6 / 9, 4))
    assert month_1["grams_per_day"] == "20.0"  # 18 drinks x 10 g (S01, France) / 9 days
    month_2 = exported[(p.pid, "month_2")]
    assert month_2["days_in_period"] == "12" and month_2["days_not_collectable"] == "12"
    assert month_2["days_missing"] == "0" and month_2["empty_reason"] == "no collectable day"
    treatment = exported[(p.pid, "treatment")]
    assert (treatment["days_missing"], treatment["days_not_collectable"]) == ("7", "24")


def test_the_manifest_and_dictionary_state_the_conventions(
    client, make_site, make_user, make_participant, runner, tmp_path
):
    trial = Trial(client, make_site, make_user, make_participant)
    trial.enrol(sex="F", day0_ago=10)
    make_user("statistician", username="stat")
    out = tmp_path / "bundle.zip"
    result = runner.invoke(args=["exports", "blinded", "--as", "stat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        dictionary = archive.read("dictionary.csv").decode("utf-8")
    conventions = manifest["drinking_outcomes"]
    assert conventions["heavy_drinking_day"]["by"] == "drinks"
    assert conventions["heavy_drinking_day"]["threshold_drinks"] == {"F": 4, "M": 5}
    assert conventions["standard_drink_grams"] == {
        "default": 14.0,
        "by_site": {"S01": 10.0, "S02": 10.0},
    }
    assert conventions["minimum_assessed"]["days"] == 7
    assert conventions["minimum_assessed"]["share_of_collectable_days"] == 0.5
    rows = {
        (r["file"], r["variable"]): r for r in csv.DictReader(io.StringIO(dictionary, newline=""))
    }
    heavy = rows[("drinking_outcomes.csv", "pct_heavy_drinking_days")]["derivation"]
    assert ">= 4 (F) / 5 (M) standard drinks" in heavy
    assert "at least 7 assessed days and at least 50% of its collectable days" in heavy
    grams = rows[("drinking_outcomes.csv", "grams_per_day")]["derivation"]
    assert "14 g (S01: 10 g, S02: 10 g)" in grams
    collectable = rows[("drinking_outcomes.csv", "days_not_collectable")]["derivation"]
    assert "final disposition" in collectable
    assert "S01: 10 g" in rows[("drinking_calendar.csv", "grams_alcohol")]["derivation"]


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
