"""Shared builders for the visit-capture tests: a trial with a list, randomized participants
whose day 0 lies in the past, and payloads for every form.

Randomization stamps "now" as day 0, so a participant followed for weeks is made by
randomizing through the API and then moving ``participants.randomized_at`` back in the
database (test set-up only: the schedule, windows and period checks all key off that date).
Every site here runs on UTC, so "today" at the site is ``date.today()`` in UTC.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import func, select, text, update

from tests.conftest import bearer
from trial.database import reading
from trial.extensions import db
from trial.participants.models import Participant

PASSWORD = "correct horse battery staple"
PROTOCOL = tomllib.loads((Path(__file__).parents[1] / "trial" / "protocol.toml").read_text())

# Written out here, not imported from the product, so derived scores are checked against an
# independent statement of the scales.
OCDS_ITEMS = [f"item_{n}" for n in range(1, 15)]
CIWA_MAXIMA = {
    "nausea_vomiting": 7,
    "tremor": 7,
    "paroxysmal_sweats": 7,
    "anxiety": 7,
    "agitation": 7,
    "tactile_disturbances": 7,
    "auditory_disturbances": 7,
    "visual_disturbances": 7,
    "headache": 7,
    "orientation": 4,
}
LAB_UNITS = {
    "GGT": ["U/L", "ukat/L"],
    "ALT": ["U/L", "ukat/L"],
    "AST": ["U/L", "ukat/L"],
    "bilirubin": ["umol/L", "mg/dL"],
    "CDT": ["%"],
}

# Every table of captured data, for "nothing was written" checks.
CAPTURE_TABLES = (
    "visits",
    "drinking_days",
    "ocds_assessments",
    "ciwa_assessments",
    "vitals",
    "lab_results",
    "blinding_assessments",
    "dosing_records",
    "dispositions",
    "protocol_deviations",
    "eligibility_answers",
    "audit_events",
)


def today() -> date:
    return datetime.now(UTC).date()


def iso(day: date) -> str:
    return day.isoformat()


def ocds(values: list[int] | int = 1) -> dict:
    values = values if isinstance(values, list) else [values] * 14
    return dict(zip(OCDS_ITEMS, values, strict=True))


def ciwa(values: dict | int = 1) -> dict:
    if isinstance(values, int):
        return {item: min(values, top) for item, top in CIWA_MAXIMA.items()}
    return {item: values.get(item, 0) for item in CIWA_MAXIMA}


def vitals(**overrides) -> dict:
    return {
        "systolic_bp": 125,
        "diastolic_bp": 80,
        "heart_rate": 72,
        "weight_kg": 78.5,
        **overrides,
    }


def lab(test="GGT", value=48.0, unit=None, upper_limit_normal=55.0) -> dict:
    return {
        "test": test,
        "value": value,
        "unit": unit or LAB_UNITS[test][0],
        "upper_limit_normal": upper_limit_normal,
    }


def calendar(first: date, last: date, drinks=2.0) -> list[dict]:
    """Timeline Followback rows for every day from first to last inclusive."""
    days = (last - first).days + 1
    return [
        {"date": iso(first + timedelta(days=i)), "standard_drinks": drinks} for i in range(days)
    ]


def counts() -> dict[str, int]:
    """Rows per capture table, read through a connection of its own (what is committed)."""
    with reading(), db.engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in CAPTURE_TABLES
        }


def visit_definitions() -> list[dict]:
    return PROTOCOL["visits"]


def window(code: str, day0: date) -> tuple[date, date, date]:
    """(target, earliest, latest) of a visit, computed from the protocol file itself."""
    (definition,) = [v for v in PROTOCOL["visits"] if v["code"] == code]
    target = day0 + timedelta(days=definition["day"])
    return (
        target,
        target - timedelta(days=definition["window_before"]),
        target + timedelta(days=definition["window_after"]),
    )


@dataclass
class Enrolled:
    pid: str
    id: int
    site: str
    consent: date
    day0: date | None
    screening_date: date | None
    screening_id: int | None


class Trial:
    """Sites S01 and S02 (UTC), a generated list, and staff of both sites."""

    def __init__(self, client, make_site, make_user, make_participant, *, planned=40):
        from randomization import lists

        self.client = client
        self.make_user = make_user
        self.make_participant = make_participant
        for code in ("S01", "S02"):
            make_site(code, timezone="UTC", planned_enrollment=planned)
        lists.generate(make_user("unblinded_statistician")[0])
        db.session.commit()
        coordinators = {s: make_user("coordinator", sites=[s]) for s in ("S01", "S02")}
        self.coordinator_user = {s: user for s, (user, _) in coordinators.items()}
        self.coordinator = {s: token for s, (_, token) in coordinators.items()}
        self.investigator_user = {}
        self.investigator = {}
        for site in ("S01", "S02"):
            user, token = make_user("investigator", sites=[site], password=PASSWORD)
            self.investigator_user[site], self.investigator[site] = user, token
        self.monitor = {s: make_user("monitor", sites=[s])[1] for s in ("S01", "S02")}

    # --- requests ---------------------------------------------------------------------

    def headers(self, site="S01", role="coordinator") -> dict:
        return bearer(getattr(self, role)[site])

    def request(self, method, path, json=None, *, site="S01", role="coordinator", token=None):
        headers = bearer(token) if token else self.headers(site, role)
        return call(self.client, method, f"/api/v1{path}", json, headers)

    def post(self, path, json, *, site="S01", role="coordinator", token=None):
        return self.request("POST", path, json, site=site, role=role, token=token)

    def patch(self, path, json, *, site="S01", role="coordinator"):
        return self.request("PATCH", path, json, site=site, role=role)

    def get(self, path, *, site="S01", role="coordinator"):
        return self.request("GET", path, site=site, role=role)

    def visit(self, pid, code, visit_date=None, *, site="S01", **body):
        payload = {"visit_code": code, **body}
        if visit_date is not None:
            payload["visit_date"] = iso(visit_date)
        return self.post(f"/participants/{pid}/visits", payload, site=site)

    # --- participants -----------------------------------------------------------------

    def enrol(
        self,
        *,
        site="S01",
        sex="F",
        day0_ago: int | None = 60,
        consent_ago: int | None = None,
        screening_ago: int | None = None,
        screening: bool = True,
        screening_drinking: bool = False,
    ) -> Enrolled:
        """Register, record screening (optionally with its 28-day calendar) and the
        eligibility answers, and randomize dated ``day0_ago`` days back (None: leave the
        participant unrandomized). A randomized participant always has its screening visit
        (randomization requires it), whatever ``screening`` says."""
        base = today()
        day0 = base - timedelta(days=day0_ago) if day0_ago is not None else None
        anchor = day0 or base
        consent = (
            base - timedelta(days=consent_ago)
            if consent_ago is not None
            else anchor - timedelta(20)
        )
        screening_date = (
            base - timedelta(days=screening_ago)
            if screening_ago is not None
            else anchor - timedelta(14)
        )
        row = self.make_participant(site=site, sex=sex, consent_date=iso(consent))
        pid = row["participant_id"]
        screening_id = None
        if screening or day0 is not None:
            # Randomization needs a completed screening visit with its baseline calendar:
            # the whole 28 days, or (``screening_drinking`` False) the day before screening.
            first = screening_date - timedelta(days=28 if screening_drinking else 1)
            body = {"drinking": calendar(first, screening_date - timedelta(days=1))}
            response = self.visit(pid, "screening", screening_date, site=site, **body)
            assert response.status_code == 201, response.json
            screening_id = response.json["id"]
            answer_eligibility(self.client, self.headers(site), pid)
        if day0 is not None:
            # Dated day 0 as the demo dates its history (``at``), so that the screening visit
            # is window-checked at randomization against the day 0 it really has.
            randomize_on(self.coordinator_user[site], pid, day0)
        internal = db.session.scalar(
            select(Participant.id).where(Participant.participant_id == pid)
        )
        return Enrolled(pid, internal, site, consent, day0, screening_date, screening_id)


def eligible_answers() -> dict[str, bool]:
    """Every eligibility criterion of the protocol answered as it requires."""
    criteria = PROTOCOL["eligibility"]["criteria"]
    return {c["code"]: c["kind"] == "inclusion" for c in criteria}


def answer_eligibility(client, headers, pid: str) -> None:
    response = client.post(
        f"/api/v1/participants/{pid}/eligibility",
        headers=headers,
        json={"answers": eligible_answers()},
    )
    assert response.status_code == 201, response.json


def randomize_on(actor, pid: str, day0: date) -> None:
    """Randomize through the service, dated ``day0`` (09:30 UTC), and commit."""
    from randomization.services import randomize

    at = datetime.combine(day0, time(9, 30), tzinfo=UTC)
    randomize(db.session.merge(actor), pid, eligibility_confirmed=True, at=at)
    db.session.commit()


def call(client, method, url, json, headers):
    """Send a request, then end the session's transaction as the app's teardown would.

    The test client shares the test's app context, so the request's session outlives it;
    in production the session is removed (rolled back) when the request ends. Without this
    a refused request would leave its transaction open (and SQLite's write lock held).
    """
    response = client.open(url, method=method, json=json, headers=headers)
    db.session.rollback()
    return response


def set_randomization_date(pid: str, day0: date) -> None:
    """Move day 0 (test set-up only: randomization always stamps the current instant)."""
    db.session.execute(
        update(Participant)
        .where(Participant.participant_id == pid)
        .values(randomized_at=datetime.combine(day0, time(9, 30), tzinfo=UTC))
    )
    db.session.commit()
    db.session.expire_all()


def audit_count() -> int:
    from trial.audit.models import AuditEvent

    return db.session.scalar(select(func.count()).select_from(AuditEvent))
