"""Adverse events: report, read, correct, withdraw; coding; expedited reports.

Site staff write at their own site; monitors and data managers read; another site's AE is a
404. Data managers code terms. Expedited reports: site staff see and submit their site's, the
data manager (the safety desk) acknowledges them; none carries an arm.
"""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.records.views import ETAG, IF_MATCH, requested_version, with_etag
from trial.safety import services
from trial.safety.coding import code_adverse_event
from trial.safety.expedited import expedited_report, expedited_reports
from trial.safety.schemas import (
    AdverseEventCorrectionSchema,
    AdverseEventCreateSchema,
    AdverseEventListQuerySchema,
    AdverseEventSchema,
    CodingSchema,
    EmptyBodySchema,
    EnteredInErrorSchema,
    ExpeditedReportQuerySchema,
    ExpeditedReportSchema,
    TermMatchSchema,
    TermSearchQuerySchema,
)
from trial.safety.search import search_terms
from trial.safety.submission import acknowledge_expedited_report, submit_expedited_report

blp = Blueprint("safety", __name__, url_prefix="/api/v1", description="Adverse events")

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
READERS = (*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)
RECORD = "/adverse-events/<int:record_id>"
REPORT = "/expedited-reports/<int:record_id>"


@blp.route("/participants/<participant_id>/adverse-events", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(AdverseEventCreateSchema)
@blp.response(201, AdverseEventSchema)
def report_adverse_event(body, participant_id):
    """Report an adverse event; the term is coded to MedDRA and a serious event opens its
    24-hour expedited report."""
    record, participant = services.report_adverse_event(g.current_user, participant_id, body)
    response = services.present_one(record, participant)
    db.session.commit()
    return response


@blp.route("/participants/<participant_id>/adverse-events", methods=["GET"])
@allow(*READERS)
@blp.arguments(AdverseEventListQuerySchema, location="query")
@blp.response(200, AdverseEventSchema(many=True))
def list_adverse_events(args, participant_id):
    """List a participant's adverse events by onset (entered-in-error ones only on request)."""
    rows = services.adverse_events_of(
        g.current_user, participant_id, include_errors=args["include_entered_in_error"]
    )
    return services.present(rows)


@blp.route("/adverse-events/uncoded", methods=["GET"])
@allow(*READERS)
@blp.response(200, AdverseEventSchema(many=True))
def list_uncoded_adverse_events():
    """List adverse events whose term is not in any MedDRA dictionary yet (your sites)."""
    return services.present(services.uncoded_adverse_events(g.current_user))


@blp.route(RECORD, methods=["GET"])
@allow(*READERS)
@blp.response(200, AdverseEventSchema, headers=ETAG)
def get_adverse_event(record_id):
    """Show one adverse event; another site's is a 404."""
    record, participant = services.get_adverse_event(g.current_user, record_id)
    return with_etag(services.present_one(record, participant), record.version)


@blp.route(RECORD, methods=["PATCH"])
@allow(*SITE_STAFF)
@blp.arguments(AdverseEventCorrectionSchema)
@blp.response(200, AdverseEventSchema, headers=ETAG)
@blp.doc(parameters=[IF_MATCH])
def correct_adverse_event(body, record_id):
    """Correct an adverse event with a reason; the whole record is checked again, a changed
    term is coded again, and every changed field is audited with old and new value. A stale
    If-Match or version is refused with 412; a body that changes nothing with 422 no_change."""
    expected = requested_version(body)
    record, participant = services.correct_adverse_event(
        g.current_user, record_id, body, expected_version=expected
    )
    response = services.present_one(record, participant)
    db.session.commit()
    return with_etag(response, response["version"])


@blp.route(f"{RECORD}/entered-in-error", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(EnteredInErrorSchema)
@blp.response(200, AdverseEventSchema, headers=ETAG)
@blp.doc(parameters=[IF_MATCH])
def mark_adverse_event_in_error(body, record_id):
    """Mark an adverse event as entered in error: kept and audited, left out of every list;
    a stale If-Match or version is refused with 412."""
    expected = requested_version(body)
    record, participant = services.withdraw_adverse_event(
        g.current_user, record_id, body["reason"], expected_version=expected
    )
    response = services.present_one(record, participant)
    db.session.commit()
    return with_etag(response, response["version"])


@blp.route(f"{RECORD}/coding", methods=["POST"])
@allow(Role.DATA_MANAGER)
@blp.arguments(CodingSchema)
@blp.response(200, AdverseEventSchema, headers=ETAG)
@blp.doc(parameters=[IF_MATCH])
def code_adverse_event_term(body, record_id):
    """Code an adverse event's verbatim term to a MedDRA preferred term, or re-code it, with
    a reason (audited: old and new PT, SOC and source). The PT must be a preferred term of
    the loaded dictionary (422 naming ``preferred_term`` otherwise); its SOC comes from it."""
    expected = requested_version(body)
    record, participant = code_adverse_event(
        g.current_user,
        record_id,
        body["preferred_term"],
        body["reason"],
        expected_version=expected,
    )
    response = services.present_one(record, participant)
    db.session.commit()
    return with_etag(response, response["version"])


@blp.route("/meddra/terms", methods=["GET"])
@allow(*READERS)
@blp.arguments(TermSearchQuerySchema, location="query")
@blp.response(200, TermMatchSchema(many=True))
def search_meddra_terms(args):
    """Find preferred terms whose name, or a synonym's, or one of their words, starts with
    ``q`` (any case), best match first, with the system organ class and the synonym that
    matched."""
    return search_terms(args["q"], args["limit"])


@blp.route("/expedited-reports", methods=["GET"])
@allow(*READERS, Role.UNBLINDED_STATISTICIAN, Role.DSMB)
@blp.arguments(ExpeditedReportQuerySchema, location="query")
@blp.response(200, ExpeditedReportSchema(many=True))
def list_expedited_reports(args):
    """List expedited reports of serious adverse events at your sites, most urgent first,
    each with its deadline (00:00 at the site on the second day after the awareness date)
    and whether it is overdue; no arm."""
    return expedited_reports(args.get("status"), actor=g.current_user, site=args.get("site"))


@blp.route(f"{REPORT}/submit", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(EmptyBodySchema, required=False)
@blp.response(200, ExpeditedReportSchema)
def submit_report(_body, record_id):
    """Record that your site sent this expedited report (an open one; 409 otherwise)."""
    submit_expedited_report(g.current_user, record_id)
    response = expedited_report(g.current_user, record_id)
    db.session.commit()
    return response


@blp.route(f"{REPORT}/acknowledge", methods=["POST"])
@allow(Role.DATA_MANAGER)
@blp.arguments(EmptyBodySchema, required=False)
@blp.response(200, ExpeditedReportSchema)
def acknowledge_report(_body, record_id):
    """Record, as the safety desk, that a submitted expedited report was received (409
    otherwise)."""
    acknowledge_expedited_report(g.current_user, record_id)
    response = expedited_report(g.current_user, record_id)
    db.session.commit()
    return response
