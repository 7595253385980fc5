"""Eligibility: the protocol's inclusion and exclusion criteria answered per participant, and
what randomization requires of the participant's course.

Each answer is a captured record (``EligibilityAnswer``): audited on entry, corrected with a
reason, marked in error like any form. The criteria come from the protocol file
(``eligibility.criteria``).
"""

from __future__ import annotations

from sqlalchemy import select

from trial.conduct.course import DISPOSITION_WORDS, course_of
from trial.conduct.models import EligibilityAnswer
from trial.errors import Conflict
from trial.extensions import db
from trial.forms.models import DrinkingDay
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.records.bulk import create_records
from trial.records.registry import records_of, register_revalidation
from trial.records.services import raise_if_errors
from trial.visits.models import Visit


def answers_of(participant: Participant) -> dict[str, EligibilityAnswer]:
    return {a.criterion: a for a in records_of(EligibilityAnswer, participant)}


def eligibility_of(participant: Participant) -> dict:
    """Each protocol criterion with the participant's answer (None: not answered yet), and
    whether the answers make the participant eligible (None while any is missing)."""
    answers = answers_of(participant)
    rows = []
    for criterion in current_protocol().eligibility_criteria:
        answer = answers.get(criterion.code)
        rows.append(
            {
                "code": criterion.code,
                "kind": criterion.kind,
                "text": criterion.text,
                "met": None if answer is None else answer.met,
                "record_id": None if answer is None else answer.id,
                "version": None if answer is None else answer.version,
            }
        )
    problems = eligibility_problems(participant, answers)
    missing = any(row["met"] is None for row in rows)
    return {"criteria": rows, "eligible": None if missing else not problems}


def eligibility_problems(participant: Participant, answers=None) -> dict[str, list[str]]:
    """Per criterion ``eligibility.CODE``: not answered, or answered so the participant is
    not eligible."""
    answers = answers_of(participant) if answers is None else answers
    problems = {}
    for criterion in current_protocol().eligibility_criteria:
        answer = answers.get(criterion.code)
        key = f"eligibility.{criterion.code}"
        if answer is None:
            problems[key] = [f"Not answered: {criterion.text}."]
        elif answer.met != criterion.required_answer:
            verb = "not met" if criterion.kind == "inclusion" else "met"
            problems[key] = [f"{criterion.kind.capitalize()} criterion {verb}: {criterion.text}."]
    return problems


def record_answers(actor, participant: Participant, answers: dict[str, bool]) -> list:
    """Record answers to criteria not answered yet (one audited record each).

    Refused whole: an unknown criterion or a non-boolean answer (422 naming each), a
    criterion already answered (409: correct that answer instead), a participant already
    randomized or ended (409).
    """
    codes = {c.code for c in current_protocol().eligibility_criteria}
    errors = {}
    for code, met in answers.items():
        if code not in codes:
            errors[f"answers.{code}"] = [f"Unknown criterion; the protocol's are {sorted(codes)}."]
        elif not isinstance(met, bool):
            errors[f"answers.{code}"] = ["Answer true (met) or false (not met)."]
    if not answers:
        errors["answers"] = ["Answer at least one criterion."]
    raise_if_errors(errors)
    course = course_of(participant)
    if course.randomized or course.final is not None:
        raise Conflict(
            f"Participant {participant.participant_id} is {participant.status.replace('_', ' ')}: "
            f"eligibility is answered before randomization; correct an answer with a reason.",
            {"answers": ["Eligibility can no longer be answered."]},
        )
    taken = answers_of(participant)
    again = sorted(code for code in answers if code in taken)
    if again:
        raise Conflict(
            "Already answered: correct those answers (PATCH /api/v1/eligibility-answers/{id}).",
            {f"answers.{code}": [f"Already answered (record {taken[code].id})."] for code in again},
        )
    return create_records(
        actor,
        [
            (EligibilityAnswer, participant, {"criterion": code, "met": met})
            for code, met in sorted(answers.items())
        ],
    )


def revalidate_answer(record: EligibilityAnswer, participant: Participant, values: dict) -> None:
    """An answer as a correction would leave it: its criterion stays."""
    errors = {}
    if values.get("criterion") != record.criterion:
        errors["criterion"] = ["The criterion of an answer does not change; correct its answer."]
    raise_if_errors(errors)


register_revalidation(EligibilityAnswer, revalidate_answer)


def check_ready_for_randomization(participant: Participant, visits: list | None = None) -> None:
    """What randomization requires of the participant's course (409 naming each gap): no
    final disposition (a screen failure stays one), a completed screening visit with its
    baseline drinking calendar, and every eligibility criterion answered as the protocol
    requires. ``visits``: the participant's active visits, when the caller has read them
    already (randomization reads them once, for this check and its window check)."""
    course = course_of(participant)
    if course.final is not None:
        words = DISPOSITION_WORDS[course.final.status]
        raise Conflict(
            f"Participant {participant.participant_id} {words} on {course.final.date}: "
            f"they cannot be randomized.",
            {"status": [f"{participant.status}: not eligible for randomization."]},
        )
    problems: dict[str, list[str]] = {}
    screening = [
        visit.id
        for visit in (records_of(Visit, participant) if visits is None else visits)
        if current_protocol().visit(visit.visit_code).day < 0 and visit.status == "completed"
    ]
    if not screening:
        problems["screening"] = ["No completed screening visit is recorded."]
    elif not _any_calendar_day(screening):
        problems["screening"] = ["The screening visit has no baseline drinking calendar."]
    problems.update(eligibility_problems(participant))
    if problems:
        raise Conflict(
            f"Participant {participant.participant_id} is not ready for randomization: "
            f"{'; '.join(m for messages in problems.values() for m in messages)}",
            problems,
        )


def _any_calendar_day(visit_ids: list[int]) -> bool:
    """Whether any of these visits holds an active drinking-calendar day (asked as such:
    loading a 28-day calendar to see that it is not empty cost a randomization its time)."""
    held = select(DrinkingDay.id).where(
        DrinkingDay.visit_id.in_(visit_ids), DrinkingDay.entered_in_error.is_(False)
    )
    return db.session.scalar(select(held.exists()))
