"""The randomization pages: randomize with the eligibility checklist, and the emergency
code-break.

Both call the API's services (``services.randomize``, ``code_break.break_code``) with input
loaded by the API's schemas, so a page refuses, records and audits exactly as the API does.
A participant's page gets a randomization section (``participant_section``) from here, since
only this package may read an allocation. No page here shows an arm, but the code-break's
own answer to its POST: once, padded so its size is the same for every arm, and never on a
page that a GET could show again.
"""

from __future__ import annotations

import secrets

from flask import flash, g, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from randomization import code_break, services
from randomization.schemas import CodeBreakSchema, RandomizeSchema
from trial.audit.models import AuditEvent
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.conduct.eligibility import check_ready_for_randomization, eligibility_of
from trial.errors import Conflict, RecordedRefusal, TooManyRequests, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol
from trial.web import page_url
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("randomization_pages", __name__)

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
CODE_BREAK_FIELDS = ("reason", "password", "confirmed")
CODE_BREAK_LABELS = {
    "reason": "Reason",
    "password": "Your password",
    "confirmed": "Confirmation",
    "_schema": "",
}
CONFIRM_CODE_BREAK = (
    "I understand this unblinds the participant and is reported to the unblinded "
    "statistician and the DSMB"
)


def _participant_url(participant_id: str) -> str:
    return url_for("participants_pages.participant", participant_id=participant_id)


# --- what randomization still needs, with where to fix it ---------------------------------------


def readiness_gaps(participant) -> dict[str, list[str]]:
    """The service's own check of what randomization still needs (empty when ready)."""
    if participant.randomized_at is not None:
        return {}
    try:
        check_ready_for_randomization(participant)
    except Conflict as gaps:
        return gaps.errors
    return {}


def fixes(participant_id: str, errors: dict[str, list[str]]) -> list[tuple[str, str | None]]:
    """Each problem as (text, link to where it is put right, or None)."""
    eligibility = url_for("conduct_pages.eligibility", participant_id=participant_id)
    screening = next((v.code for v in current_protocol().visits if v.day < 0), None)
    rows = []
    for key, messages in errors.items():
        if key == "screening":
            label = "Screening visit"
            href = (
                screening
                and page_url("visits_pages.new_visit", participant_id=participant_id,
                             visit_code=screening)
            ) or _participant_url(participant_id)  # fmt: skip
        elif key.startswith("eligibility."):
            code = key.partition(".")[2]
            label, href = f"Eligibility {code}", f"{eligibility}#answers-{code}"
        elif key == "eligibility_confirmed":
            label, href = "Confirmation", "#eligibility_confirmed"
        elif key == "status":
            label = "Status"
            href = url_for("conduct_pages.disposition", participant_id=participant_id)
        else:
            label, href = "", None
        rows.extend((f"{label}: {m}" if label else m, href) for m in messages)
    return rows


def _checklist(participant) -> dict:
    """The checklist and what is still missing: criteria not answered are one line (the
    checklist names each), the rest as the service names them."""
    shown = eligibility_of(participant)
    pid = participant.participant_id
    unanswered = {f"eligibility.{row['code']}" for row in shown["criteria"] if row["met"] is None}
    gaps = {k: v for k, v in readiness_gaps(participant).items() if k not in unanswered}
    rows = fixes(pid, gaps)
    if unanswered:
        count = len(unanswered)
        rows.append(
            (
                f"Eligibility: {count} criteri{'on' if count == 1 else 'a'} not answered.",
                url_for("conduct_pages.eligibility", participant_id=pid),
            )
        )
    return {"eligibility": shown, "gaps": rows}


# --- the participant page's section -------------------------------------------------------------


def unblinding_of(participant) -> AuditEvent | None:
    """The audit row of the participant's code-break: when and by whom (it holds no arm)."""
    if not participant.unblinded:
        return None
    return db.session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.action == "code_break",
            AuditEvent.entity_type == "participant",
            AuditEvent.entity_id == participant.participant_id,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )


def participant_section(participant) -> Markup:
    """The participant page's randomization section: the blinded allocation once there is
    one, else (for site staff) the eligibility checklist and the Randomize form."""
    user = g.current_user
    slot = services.allocation_of(participant)
    staff = user.role in (Role.COORDINATOR.value, Role.INVESTIGATOR.value)
    context = {"participant": participant, "slot": slot, "errors": {}, "form": MultiDict()}
    if slot is None and staff and participant.status == "screening":
        context.update(_checklist(participant), offer=True)
    if slot is not None:
        context["unblinding"] = unblinding_of(participant)
    return Markup(render_template("randomization/section.html", **context))


# --- randomize ----------------------------------------------------------------------------------


def _randomize_page(participant, form, errors, status=200):
    return render_template(
        "randomization/randomize.html",
        title=f"Randomize {participant.participant_id}",
        participant=participant,
        form=form,
        errors=errors,
        problems=fixes(participant.participant_id, errors),
        offer=participant.status == "screening",
        **_checklist(participant),
    ), status


@bp.route("/participants/<participant_id>/randomize", methods=["GET"])
@allow(*SITE_STAFF)
def randomize(participant_id):
    """The confirmation step: the checklist, what is missing, and the Randomize button."""
    participant = get_visible_participant(g.current_user, participant_id)
    if participant.randomized_at is not None:
        return redirect(_participant_url(participant_id))
    return _randomize_page(participant, MultiDict(), {})


@bp.route("/participants/<participant_id>/randomize", methods=["POST"])
@allow(*SITE_STAFF)
def confirm_randomize(participant_id):
    """Randomize (as POST /api/v1/participants/{id}/randomize: a repeat gives the same
    allocation), then show it on the participant's page."""
    try:
        body = read_form(RandomizeSchema(), request.form, participant_id=participant_id)
        allocation, created = services.randomize(
            g.current_user, participant_id, eligibility_confirmed=body["eligibility_confirmed"]
        )
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        if isinstance(refused, RecordedRefusal):
            db.session.commit()  # the exhausted stratum's notice stays on record
        else:
            db.session.rollback()
        errors = refused.errors or {"_schema": [refused.message]}
        participant = get_visible_participant(g.current_user, participant_id)
        return _randomize_page(participant, request.form, errors, refused.status)
    flash(
        f"{'Randomized' if created else 'Already randomized'}: randomization number "
        f"{allocation.randomization_number}, kit number {allocation.kit_number}.",
        "success",
    )
    return redirect(_participant_url(participant_id))


# --- the emergency code-break -------------------------------------------------------------------


def _code_break_page(participant, errors=None, form=None, status=200):
    return render_template(
        "randomization/code_break.html",
        title=f"Emergency code-break for {participant.participant_id}",
        participant=participant,
        slot=services.allocation_of(participant),
        unblinding=unblinding_of(participant),
        errors=errors or {},
        form=form or MultiDict(),
        labels=CODE_BREAK_LABELS,
        confirm_text=CONFIRM_CODE_BREAK,
    ), status


@bp.route("/participants/<participant_id>/code-break", methods=["GET"], endpoint="code_break")
@allow(Role.INVESTIGATOR)
def code_break_page(participant_id):
    """What a code-break does, and its form (never the arm)."""
    return _code_break_page(get_visible_participant(g.current_user, participant_id))


def pad_arm(arm: str) -> str:
    """The arm's HTML, followed by spaces up to the longest arm name's: the page's size is
    then the same whatever the arm (as ``release.padded_json_response`` does for JSON)."""
    shown = [str(escape(name)).encode() for name in current_protocol().arms]
    text = str(escape(arm))
    return text + " " * (max(map(len, shown)) - len(text.encode()))


@bp.route("/participants/<participant_id>/code-break", methods=["POST"])
@allow(Role.INVESTIGATOR)
def break_code(participant_id):
    """Break the code (as POST /api/v1/participants/{id}/code-break) and show the arm on
    this response only: no redirect, so no later GET can show it again."""
    participant = get_visible_participant(g.current_user, participant_id)
    errors: dict[str, list[str]] = {}
    try:
        body = read_form(CodeBreakSchema(), request.form, participant_id=participant_id)
    except ValidationFailed as refused:
        errors, body = dict(refused.errors), None
    if (request.form.getlist("confirmed") or [""])[-1] != "true":
        errors["confirmed"] = ["Confirm that you understand what breaking the code does."]
    kept = MultiDict({"reason": request.form.get("reason", "")})  # never the password
    if errors:
        db.session.rollback()
        return _code_break_page(participant, errors, kept, 422)
    try:
        participant, arm = code_break.break_code(
            g.current_user, participant_id, reason=body["reason"], password=body["password"]
        )
        db.session.commit()
    except (RecordedRefusal, Conflict, TooManyRequests, ValidationFailed) as refused:
        if isinstance(refused, RecordedRefusal):
            db.session.commit()  # the refused attempt stays in the audit trail
        else:
            db.session.rollback()
        participant = get_visible_participant(g.current_user, participant_id)
        return _code_break_page(
            participant, form_errors(refused, CODE_BREAK_FIELDS), kept, refused.status
        )
    marker = f"arm-{secrets.token_hex(8)}"
    html = render_template(
        "randomization/code_break_result.html",
        title=f"Code broken for {participant.participant_id}",
        participant=participant,
        arm=marker,
        reason=body["reason"],
    )
    return html.replace(marker, pad_arm(arm), 1), 200
