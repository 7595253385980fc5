"""The demo trial is realistic, reproducible, and stored and audited like real data.

One demo of ``N`` participants is loaded per database and shared by the realism checks. The
randomization list seed is cryptographic in production; here it is fixed, so the allocation,
and with it the whole trial, is the same on every run. Arms are read the sanctioned way,
through ``allocation_key`` as the unblinded statistician.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

import randomization.demo.writer as demo_writer
from randomization.outputs import allocation_key
from tests.conftest import BACKENDS
from tests.demo_helpers import fixed_list_seed, fresh_app
from trial.audit.models import AuditEvent
from trial.auth.services import get_user_by_username
from trial.conduct.models import Disposition, ProtocolDeviation
from trial.dosing.models import DosingRecord
from trial.extensions import db
from trial.forms.models import (
    BlindingAssessment,
    CiwaAssessment,
    DrinkingDay,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.participants.models import Participant
from trial.participants.services import site_today
from trial.protocol import current_protocol
from trial.safety.models import AdverseEvent, ExpeditedReport
from trial.safety.services import uncoded_adverse_events
from trial.visits.models import Visit
from trial.visits.schedule import build_schedule, in_window

N = 120
SEED = 20261121
SEDATION_TERMS = {"Somnolence", "Sedation"}
CLINICAL_ENTITIES = (
    "participant",
    "visit",
    "drinking_day",
    "ocds",
    "ciwa",
    "vitals",
    "lab_result",
    "dosing",
    "adverse_event",
    "expedited_report",
    "protocol_deviation",
    "disposition",
)


def run_demo(application, participants: int = N, seed: int = SEED) -> None:
    with fixed_list_seed():
        result = application.test_cli_runner().invoke(
            args=["trial", "demo", "--participants", str(participants), "--seed", str(seed)]
        )
    assert result.exit_code == 0, result.output
    db.session.remove()


def arms() -> dict[str, str]:
    statistician = get_user_by_username("unblinded_statistician")
    key = {pid: arm for pid, _number, arm in allocation_key(statistician)}
    db.session.rollback()  # the key was only read for the test, not released
    return key


def clinical_data() -> dict:
    """Every clinical record by natural keys (no ids, no timestamps): the trial's content."""
    pid = {p.id: p.participant_id for p in db.session.scalars(select(Participant))}
    visit_code = {
        v.id: (pid[v.participant_id], v.visit_code) for v in db.session.scalars(select(Visit))
    }

    def rows(model, *fields, by_visit=False):
        out = []
        for record in db.session.scalars(select(model)):
            owner = visit_code[record.visit_id] if by_visit else pid[record.participant_id]
            out.append((owner, *(getattr(record, f) for f in fields)))
        return sorted(out, key=repr)

    return {
        "participants": sorted(
            (p.participant_id, p.sex, p.year_of_birth, p.consent_date, p.status, p.randomized_at)
            for p in db.session.scalars(select(Participant))
        ),
        "key": sorted(arms().items()),
        "visits": rows(Visit, "visit_code", "visit_date", "status", "missed_reason"),
        "drinking": rows(DrinkingDay, "day", "standard_drinks"),
        "ocds": rows(OcdsAssessment, *OcdsAssessment.AUDITED_FIELDS, by_visit=True),
        "ciwa": rows(CiwaAssessment, *CiwaAssessment.AUDITED_FIELDS, by_visit=True),
        "vitals": rows(Vitals, *Vitals.AUDITED_FIELDS, by_visit=True),
        "labs": rows(LabResult, *LabResult.AUDITED_FIELDS, by_visit=True),
        "blinding": rows(BlindingAssessment, *BlindingAssessment.AUDITED_FIELDS, by_visit=True),
        "dosing": rows(DosingRecord, *DosingRecord.AUDITED_FIELDS),
        "adverse_events": rows(AdverseEvent, *AdverseEvent.AUDITED_FIELDS),
        "deviations": rows(ProtocolDeviation, "category", "description", "date", "automatic"),
        "dispositions": rows(Disposition, "status", "date", "reason"),
    }


# Audited values that are record ids or server instants, which differ between two loads.
VARYING = {("expedited_report", "adverse_event_id"), ("expedited_report", "due_at")}


def clinical_audit() -> Counter:
    """The audit rows of clinical records, without ids, times and hashes."""
    rows = db.session.execute(
        select(
            AuditEvent.action,
            AuditEvent.entity_type,
            AuditEvent.entity_site,
            AuditEvent.field,
            AuditEvent.old_value,
            AuditEvent.new_value,
            AuditEvent.reason,
            AuditEvent.username,
        ).where(AuditEvent.entity_type.in_(CLINICAL_ENTITIES))
    ).all()
    return Counter(
        (*row[:5], None if (row[1], row[3]) in VARYING else row[5], *row[6:]) for row in rows
    )


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    """The demo of N participants, loaded once per database for the realism checks."""
    with fresh_app(request.param, request, tmp_path_factory.mktemp("demo")) as application:
        run_demo(application)
        yield SimpleNamespace(app=application, backend=request.param, arms=arms())


@pytest.fixture
def trial(demo):
    with demo.app.app_context():
        yield demo
        db.session.remove()


def participants_by_id() -> dict[int, Participant]:
    return {p.id: p for p in db.session.scalars(select(Participant))}


def safety_population() -> set[int]:
    return set(
        db.session.scalars(
            select(DosingRecord.participant_id).where(DosingRecord.tablets_per_day > 0)
        )
    )


def test_heavy_drinking_falls_more_on_baclofen(trial):
    """Mean reduction in % heavy drinking days, baseline vs from week 5 on, by arm."""
    protocol = current_protocol()
    people = participants_by_id()
    calendar = defaultdict(list)
    for participant_id, day, drinks in db.session.execute(
        select(DrinkingDay.participant_id, DrinkingDay.day, DrinkingDay.standard_drinks)
    ):
        calendar[participant_id].append((day, drinks))
    reductions, at_entry = defaultdict(list), []
    for participant_id, days in calendar.items():
        person = people[participant_id]
        if person.randomized_at is None:
            continue
        day0 = site_today(person.site, person.randomized_at)
        heavy = protocol.heavy_drinking_threshold[person.sex]
        before = [d >= heavy for day, d in days if day < day0]
        after = [d >= heavy for day, d in days if day >= day0 + timedelta(days=28)]
        assert len(before) >= 28  # the baseline calendar covers the 28 days before screening
        at_entry.append(sum(before) / len(before))
        if len(after) >= 28:
            reductions[trial.arms[person.participant_id]].append(
                sum(before) / len(before) - sum(after) / len(after)
            )
    mean = {arm: sum(values) / len(values) for arm, values in reductions.items()}
    assert min(len(v) for v in reductions.values()) >= 20
    assert sum(at_entry) / len(at_entry) > 0.5  # heavy drinkers at entry
    assert mean["baclofen"] > mean["placebo"] > 0, mean


def test_sedation_is_more_frequent_on_baclofen(trial):
    people = participants_by_id()
    exposed = Counter(trial.arms[people[p].participant_id] for p in safety_population())
    sedated = {
        participant_id
        for participant_id, term in db.session.execute(
            select(AdverseEvent.participant_id, AdverseEvent.preferred_term)
        )
        if term in SEDATION_TERMS
    }
    cases = Counter(trial.arms[people[p].participant_id] for p in sedated)
    rate = {arm: cases[arm] / exposed[arm] for arm in exposed}
    assert rate["baclofen"] > rate["placebo"], rate
    assert 0.05 < rate["baclofen"] < 0.5


def test_every_adverse_event_is_coded_or_listed_for_coding(trial):
    events = list(db.session.scalars(select(AdverseEvent)))
    assert len(events) > N  # a few per participant
    data_manager = get_user_by_username("data_manager")
    listed = {record.id for record, _participant in uncoded_adverse_events(data_manager)}
    for event in events:
        if event.coding_source == "uncoded":
            assert event.id in listed, event.term
        else:
            assert event.preferred_term and event.system_organ_class, event.term
    serious = [e.id for e in events if e.serious]
    reports = set(db.session.scalars(select(ExpeditedReport.adverse_event_id)))
    assert set(serious) <= reports


def test_the_trial_is_followed_up_to_today(trial):
    people = participants_by_id()
    statuses = Counter(d.status for d in db.session.scalars(select(Disposition)))
    randomized = [p for p in people.values() if p.randomized_at is not None]
    early = sum(n for status, n in statuses.items() if status != "completed")
    assert statuses["completed"] > 0 and early > 0
    assert 0.15 < early / len(randomized) < 0.5, statuses  # about a third stop early
    # Finished, ongoing, and screened but never randomized (screen failures, in screening).
    finished = {d.participant_id for d in db.session.scalars(select(Disposition))}
    assert any(p.id not in finished for p in randomized)
    assert 0 < len(people) - len(randomized) < 0.3 * len(people)
    consents = sorted(p.consent_date for p in people.values())
    assert (consents[-1] - consents[0]).days > 365
    visits = list(db.session.scalars(select(Visit)))
    assert any(v.status == "missed" for v in visits)
    assert all(
        v.visit_date <= site_today(people[v.participant_id].site) for v in visits if v.visit_date
    )
    # An ongoing participant has visits still to come.
    ongoing = next(p for p in randomized if p.id not in finished)
    mine = [v for v in visits if v.participant_id == ongoing.id]
    assert {s.status for s in build_schedule(ongoing, mine)} & {"upcoming", "due"}


def test_out_of_window_visits_raise_deviations_and_nothing_else_does(trial):
    people = participants_by_id()
    protocol = current_protocol()
    automatic = {
        d.visit_id
        for d in db.session.scalars(
            select(ProtocolDeviation).where(ProtocolDeviation.automatic.is_(True))
        )
    }
    outside = set()
    for visit in db.session.scalars(select(Visit).where(Visit.status == "completed")):
        person = people[visit.participant_id]
        day0 = site_today(person.site, person.randomized_at) if person.randomized_at else None
        if not in_window(protocol.visit(visit.visit_code), day0, visit.visit_date):
            outside.add(visit.id)
    assert outside and automatic == outside


def test_study_drug_is_titrated_with_reasons(trial):
    protocol = current_protocol()
    records = defaultdict(list)
    for record in db.session.scalars(select(DosingRecord).order_by(DosingRecord.date)):
        records[record.participant_id].append(record)
    reasons = Counter()
    for history in records.values():
        assert history[0].tablets_per_day == protocol.dosing["start_tablets_per_day"]
        for before, after in zip(history, history[1:], strict=False):
            assert after.tablets_per_day <= protocol.dosing["max_tablets_per_day"]
            if after.tablets_per_day != before.tablets_per_day:
                assert after.change_reason
                reasons[after.change_reason.split(" ")[0]] += 1
    assert reasons["Titration"] and reasons["Taper:"] and reasons["Dose"], reasons


def test_labs_and_scales_are_recorded(trial):
    labs = list(db.session.scalars(select(LabResult)))
    assert {lab.test for lab in labs} >= {"GGT", "ALT", "AST"}
    assert {lab.unit for lab in labs} >= {"U/L", "ukat/L"}
    assert all(lab.upper_limit_normal > 0 for lab in labs)
    for model in (OcdsAssessment, CiwaAssessment, Vitals):
        assert db.session.scalars(select(model)).first() is not None


def test_audit_chain_and_randomization_list_verify(trial):
    runner = trial.app.test_cli_runner()
    audit = runner.invoke(args=["audit", "verify"])
    assert audit.exit_code == 0, audit.output
    listed = runner.invoke(args=["randomization", "verify"])
    assert listed.exit_code == 0, listed.output
    # Every clinical record is in the trail, field by field.
    db.session.remove()
    audited = db.session.scalar(
        select(db.func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.entity_type == "drinking_day")
    )
    days = db.session.scalar(select(db.func.count()).select_from(DrinkingDay))
    assert audited == 2 * days


def test_same_seed_same_trial(trial, request, tmp_path):
    """A second demo with the same seed (and list) holds exactly the same trial."""
    first = clinical_data()
    with fresh_app(trial.backend, request, tmp_path) as again:
        run_demo(again)
        second = clinical_data()
    assert first["key"] == second["key"]
    for name in first:
        assert first[name] == second[name], name


def test_bulk_paths_store_what_the_services_store(backend, request, tmp_path):
    """Entered one record at a time through the services (with all their checks), the demo
    data gives the same records and the same audit rows as through the bulk paths."""
    results = []
    for bulk in (False, True):
        with fresh_app(backend, request, tmp_path / str(bulk)) as application:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(demo_writer, "BULK", bulk)
                run_demo(application, participants=12, seed=7)
            results.append((clinical_data(), clinical_audit()))
    (single, single_audit), (bulk, bulk_audit) = results
    for name in single:
        assert single[name] == bulk[name], name
    assert single_audit == bulk_audit
