"""The conduct pages: a participant's eligibility checklist, disposition and deviations.

Each page reads through the API's services and loads its form with the API's own schema
(``trial.web.forms``), so a page refuses and audits exactly as ``POST /api/v1/participants/
{id}/eligibility``, ``.../disposition`` and ``.../deviations`` do. Reading is open to the
API's readers, writing to its site staff: one view per method, each with the API view's
``@allow``.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.conduct import eligibility, services
from trial.conduct.models import (
    DEVIATION_CATEGORIES,
    DISPOSITIONS,
    DISPOSITIONS_NEEDING_REASON,
    Disposition,
    EligibilityAnswer,
    ProtocolDeviation,
)
from trial.conduct.schemas import (
    DeviationCreateSchema,
    DeviationSchema,
    DispositionCreateSchema,
    DispositionSchema,
    EligibilityAnswersSchema,
)
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol
from trial.records.registry import records_of
from trial.records.views import READERS, SITE_STAFF
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, load_form, read_form

bp = PageBlueprint("conduct_pages", __name__)

DISPOSITION_LABELS = {"status": "Disposition", "date": "Date", "reason": "Reason"}
DEVIATION_LABELS = {"category": "Category", "description": "Description", "date": "Date"}
DISPOSITION_TEXT = {
    "screen_failure": "Screen failure (not randomized)",
    "completed": "Completed the study",
    "discontinued_treatment": "Stopped the study drug (still followed)",
    "withdrew": "Withdrew consent",
    "lost_to_follow_up": "Lost to follow-up",
    "death": "Death",
}
# An eligibility answer as a JSON client sends it; anything else goes to the service as
# typed, which refuses it by its own rule.
_ANSWERS = {"true": True, "false": False}


def _participant(participant_id: str, lock: bool = False):
    return get_visible_participant(g.current_user, participant_id, lock=lock)


# --- eligibility ----------------------------------------------------------------------------


def readiness_gaps(participant) -> dict[str, list[str]]:
    """What randomization still needs of the participant, by the service's own check
    (``screening``, ``eligibility.CODE``, ``status``); empty once ready or randomized."""
    if participant.randomized_at is not None:
        return {}
    try:
        eligibility.check_ready_for_randomization(participant)
    except Conflict as gaps:
        return gaps.errors
    return {}


def _eligibility_page(participant, form, errors, status=200):
    criteria = current_protocol().eligibility_criteria
    labels = {f"answers.{c.code}": f"{c.code} {c.text}" for c in criteria}
    labels["answers"] = "Answers"
    shown = eligibility.eligibility_of(participant)
    # Criteria not answered are asked below; the list names what else is missing.
    unanswered = {f"eligibility.{row['code']}" for row in shown["criteria"] if row["met"] is None}
    gaps = {k: v for k, v in readiness_gaps(participant).items() if k not in unanswered}
    return render_template(
        "conduct/eligibility.html",
        title=f"Eligibility of {participant.participant_id}",
        participant=participant,
        eligibility=shown,
        gaps=gaps,
        unanswered=len(unanswered),
        answer_entity=EligibilityAnswer.ENTITY,
        can_answer=participant.randomized_at is None and participant.status == "screening",
        form=form,
        errors=errors,
        labels=labels,
    ), status


# Named ``eligibility`` (the name other pages link to); the function's own name is the module's.
@bp.route("/participants/<participant_id>/eligibility", methods=["GET"], endpoint="eligibility")
@allow(*READERS)
def eligibility_page(participant_id):
    """The protocol's criteria with the participant's answers, and what randomization
    still needs."""
    return _eligibility_page(_participant(participant_id), MultiDict(), {})


@bp.route("/participants/<participant_id>/eligibility", methods=["POST"])
@allow(*SITE_STAFF)
def answer_eligibility(participant_id):
    """Answer the criteria not answered yet (each answer an audited record)."""
    participant = _participant(participant_id, lock=True)
    answers = {}
    for criterion in current_protocol().eligibility_criteria:
        text = (request.form.get(f"answers.{criterion.code}") or "").strip()
        if text:
            answers[criterion.code] = _ANSWERS.get(text.lower(), text)
    try:
        body = load_form(
            EligibilityAnswersSchema(), {"answers": answers}, participant_id=participant_id
        )
        eligibility.record_answers(g.current_user, participant, body["answers"])
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        return _eligibility_page(
            _participant(participant_id), request.form, form_errors(refused), refused.status
        )
    flash(f"{len(answers)} eligibility answer(s) recorded.", "success")
    return redirect(url_for("conduct_pages.eligibility", participant_id=participant_id))


# --- disposition and deviations ---------------------------------------------------------------


def _records_page(kind: str, participant, form, errors, status=200):
    if kind == "disposition":
        model, schema, labels = Disposition, DispositionSchema, DISPOSITION_LABELS
        title = f"Disposition of {participant.participant_id}"
    else:
        model, schema, labels = ProtocolDeviation, DeviationSchema, DEVIATION_LABELS
        title = f"Protocol deviations of {participant.participant_id}"
    rows = schema(many=True).dump(records_of(model, participant, include_errors=True))
    return render_template(
        f"conduct/{'disposition' if kind == 'disposition' else 'deviations'}.html",
        title=title,
        participant=participant,
        records=rows,
        entity=model.ENTITY,
        form=form,
        errors=errors,
        labels=labels,
        statuses=[(s, DISPOSITION_TEXT.get(s, s)) for s in DISPOSITIONS],
        needing_reason=[DISPOSITION_TEXT[s].split(" (")[0] for s in DISPOSITIONS_NEEDING_REASON],
        categories=[(c, c.replace("_", " ").capitalize()) for c in DEVIATION_CATEGORIES],
    ), status


@bp.route("/participants/<participant_id>/disposition", methods=["GET"])
@allow(*READERS)
def disposition(participant_id):
    """The participant's dispositions, and the form to record one."""
    return _records_page("disposition", _participant(participant_id), MultiDict(), {})


@bp.route("/participants/<participant_id>/disposition", methods=["POST"])
@allow(*SITE_STAFF)
def record_disposition(participant_id):
    """Record a disposition (the same service and rules as the API's POST)."""
    try:
        body = read_form(DispositionCreateSchema(), request.form, participant_id=participant_id)
        participant = _participant(participant_id, lock=True)
        services.record_disposition(g.current_user, participant, body)
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        return _records_page(
            "disposition", _participant(participant_id), request.form,
            form_errors(refused), refused.status,
        )  # fmt: skip
    flash(f"Disposition recorded; the participant is now {participant.status}.", "success")
    return redirect(url_for("conduct_pages.disposition", participant_id=participant_id))


@bp.route("/participants/<participant_id>/deviations", methods=["GET"])
@allow(*READERS)
def deviations(participant_id):
    """The participant's protocol deviations, and the form to record one."""
    return _records_page("deviations", _participant(participant_id), MultiDict(), {})


@bp.route("/participants/<participant_id>/deviations", methods=["POST"])
@allow(*SITE_STAFF)
def record_deviation(participant_id):
    """Record a protocol deviation (the same service and rules as the API's POST)."""
    try:
        body = read_form(DeviationCreateSchema(), request.form, participant_id=participant_id)
        services.record_deviation(g.current_user, _participant(participant_id), body)
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        return _records_page(
            "deviations", _participant(participant_id), request.form,
            form_errors(refused), refused.status,
        )  # fmt: skip
    flash("Protocol deviation recorded.", "success")
    return redirect(url_for("conduct_pages.deviations", participant_id=participant_id))
