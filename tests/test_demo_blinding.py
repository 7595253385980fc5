"""The demo's blinding assessment: asked where the protocol asks, realistic (better than
chance on baclofen, above all after sedation; about chance on placebo), reproducible, stored
the same by the bulk and the single-record paths, and drawn apart from everything else (no
other figure of the demo moves). SQLite and PostgreSQL.

Sedation is read back from the stored adverse events by their verbatim terms (the demo's
sedating kinds written out here, not imported), with onset on or before the visit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from types import SimpleNamespace

import pytest
from sqlalchemy import select

import randomization.demo.course as demo_course
import randomization.demo.writer as demo_writer
from reports.blinding_guesses import tally
from reports.blinding_index import blinding_indices
from tests.conftest import BACKENDS
from tests.demo_helpers import fresh_app
from tests.test_demo_realism import arms, clinical_audit, clinical_data, run_demo
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.forms.models import BlindingAssessment
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.safety.models import AdverseEvent
from trial.visits.models import Visit

N = 240
SEED = 20261121
SEDATING_VERBATIMS = {
    term.casefold()
    for term in (
        "Somnolence", "drowsiness", "Drowsy", "sleepy", "Sedation", "Fatigue", "tired",
        "tiredness", "Asthenia", "Dizziness", "dizzy", "Vertigo",
    )
}  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    with fresh_app(request.param, request, tmp_path_factory.mktemp("blinding")) as application:
        run_demo(application, participants=N, seed=SEED)
        yield SimpleNamespace(app=application, backend=request.param, arms=arms())


@pytest.fixture
def trial(demo):
    with demo.app.app_context():
        yield demo
        db.session.remove()


def answers() -> list[tuple]:
    """(participant, visit code, visit date, respondent, guess, confidence), active rows."""
    return db.session.execute(
        select(
            Participant.participant_id,
            Visit.visit_code,
            Visit.visit_date,
            BlindingAssessment.respondent,
            BlindingAssessment.guess,
            BlindingAssessment.confidence,
        )
        .join(Visit, Visit.id == BlindingAssessment.visit_id)
        .join(Participant, Participant.id == BlindingAssessment.participant_id)
        .where(BlindingAssessment.entered_in_error.is_(False))
        .order_by(Participant.participant_id, Visit.visit_code, BlindingAssessment.respondent)
    ).all()


def sedation_onsets() -> dict[str, list]:
    onsets = defaultdict(list)
    rows = db.session.execute(
        select(Participant.participant_id, AdverseEvent.term, AdverseEvent.onset_date)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .where(AdverseEvent.entered_in_error.is_(False))
    )
    for pid, term, onset in rows:
        if " ".join(term.split()).casefold() in SEDATING_VERBATIMS:
            onsets[pid].append(onset)
    return onsets


def test_guesses_are_asked_at_every_completed_visit_the_protocol_names_and_nowhere_else(trial):
    asked = {v.code for v in current_protocol().visits if "blinding" in v.forms}
    assert asked == {"week_12", "end_of_treatment"}
    completed = set(
        db.session.execute(
            select(Participant.participant_id, Visit.visit_code)
            .join(Participant, Participant.id == Visit.participant_id)
            .where(Visit.status == "completed", Visit.visit_code.in_(asked))
        ).all()
    )
    rows = answers()
    by_visit = defaultdict(list)
    for pid, code, _day, respondent, guess, confidence in rows:
        by_visit[(pid, code)].append(respondent)
        assert guess in ("baclofen", "placebo", "dont_know")
        assert (confidence is None) == (guess == "dont_know")
    assert set(by_visit) == completed and len(completed) > 100
    assert all(sorted(r) == ["investigator", "participant"] for r in by_visit.values())
    kinds = {(guess, confidence) for *_, guess, confidence in rows}
    assert len(kinds) == 5  # every answer of the form occurs


def test_guesses_beat_chance_on_baclofen_and_not_on_placebo(trial):
    """Bang's index (five answers) per arm, every block pooled: about 0.3 on baclofen, about
    0 on placebo; James' index near 0.5 (between chance and a broken blind: not below
    0.35). Per block, baclofen's index is above placebo's."""
    rows = answers()
    table = tally(((trial.arms[r[0]], r[4], r[5]) for r in rows), five_category=True)
    pooled = blinding_indices(table)
    assert 0.2 <= pooled.bang_active.estimate <= 0.4, float(pooled.bang_active.estimate)
    assert -0.12 <= pooled.bang_control.estimate <= 0.12, float(pooled.bang_control.estimate)
    assert 0.35 <= pooled.james.estimate <= 0.7, float(pooled.james.estimate)
    dont_know = sum(1 for r in rows if r[4] == "dont_know") / len(rows)
    assert 0.12 <= dont_know <= 0.35
    blocks = defaultdict(list)
    for r in rows:
        blocks[(r[1], r[3])].append((trial.arms[r[0]], r[4], r[5]))
    assert len(blocks) == 4
    for block in blocks.values():
        result = blinding_indices(tally(block, five_category=True))
        assert result.bang_active.estimate > result.bang_control.estimate


def test_sedation_makes_guessing_baclofen_more_likely(trial):
    """Among everyone's arm guesses, the share naming baclofen is higher after a sedating AE
    (in each arm), and on baclofen higher than on placebo without one."""
    onsets = sedation_onsets()
    share = defaultdict(lambda: [0, 0])  # (arm, sedated) -> [baclofen guesses, guesses]
    for pid, _code, day, _respondent, guess, _confidence in answers():
        if guess == "dont_know":
            continue
        sedated = any(onset <= day for onset in onsets.get(pid, ()))
        cell = share[(trial.arms[pid], sedated)]
        cell[0] += guess == "baclofen"
        cell[1] += 1
    rate = {key: named / total for key, (named, total) in share.items()}
    assert all(total >= 30 for _named, total in share.values()), dict(share)
    assert rate[("baclofen", True)] > rate[("baclofen", False)] + 0.1, rate
    assert rate[("placebo", True)] > rate[("placebo", False)], rate
    assert rate[("baclofen", False)] > rate[("placebo", False)], rate
    assert 0.35 <= rate[("placebo", False)] <= 0.6, rate


def test_guesses_are_reproducible_and_stored_alike_by_both_paths(backend, request, tmp_path):
    """Two loads with the same seed, one record at a time through the services and through
    the bulk paths: the same guesses, and the same audit rows for them."""
    results = []
    for bulk in (False, True):
        with fresh_app(backend, request, tmp_path / str(bulk)) as application:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(demo_writer, "BULK", bulk)
                run_demo(application, participants=16, seed=7)
            audit = Counter(
                tuple(row)
                for row in db.session.execute(
                    select(
                        AuditEvent.action,
                        AuditEvent.field,
                        AuditEvent.old_value,
                        AuditEvent.new_value,
                        AuditEvent.username,
                    ).where(AuditEvent.entity_type == BlindingAssessment.ENTITY)
                )
            )
            results.append((answers(), audit))
    (single, single_audit), (bulk, bulk_audit) = results
    assert single and single == bulk
    assert single_audit == bulk_audit and bulk_audit.total() == 3 * len(bulk)


def test_the_guesses_shift_no_other_figure_of_the_demo(backend, request, tmp_path):
    """The same demo without the blinding assessment (its hook made a no-op) holds exactly
    the same clinical records: the guesses are drawn from a stream of their own."""
    results = []
    for with_guesses in (True, False):
        with fresh_app(backend, request, tmp_path / str(with_guesses)) as application:
            with pytest.MonkeyPatch.context() as patch:
                if not with_guesses:
                    patch.setattr(demo_course.blinding, "add_guesses", lambda *a, **k: None)
                run_demo(application, participants=16, seed=7)
            results.append((clinical_data(), clinical_audit(), len(answers())))
    (data, audit, guesses), (bare, bare_audit, none) = results
    assert guesses > 0 and none == 0
    assert data.pop("blinding") and not bare.pop("blinding")  # the guesses, and only they
    for name in data:
        assert data[name] == bare[name], name
    assert audit == bare_audit
