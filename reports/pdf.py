"""Build the DSMB safety report (open or closed) as PDF bytes, and record its release.

The open report is pooled: one Total column everywhere, no arm, no dose, no figure by arm.
The closed report adds one column per arm, coded A, B, ... in the protocol's arm order (or
named with ``arms="named"``); the code key is never printed. Both share the table numbering.

Reproducibility: the report is dated by its data cut-off. Its "generated" time is the
cut-off itself, the PDF is written in reportlab's invariant mode with fixed metadata, and
every order is explicit, so the same data and cut-off give the same bytes. The wall-clock
time of each generation is the audit event's time, recorded with the file's digest (keyed,
for the closed report: see ``randomization.release``).

The sections themselves are laid out by ``reports.story``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from exports.snapshot import cyclic_gc_paused
from randomization.release import pad_pdf, release_digest
from reports.data import load_safety_data, resolve_cutoff
from reports.layout import PageMarks, render
from reports.options import ARM_MODES, SESSIONS
from reports.story import build_story, cutoff_text
from trial.audit.services import record_event
from trial.auth.roles import UNBLINDED_ROLES
from trial.database import reading
from trial.errors import Forbidden, ValidationFailed
from trial.extensions import db
from trial.protocol import current_protocol

AUTHOR = "Trial data service"


@dataclass(frozen=True)
class SafetyReport:
    pdf: bytes
    sha256: str
    session: str
    arms: str | None
    cutoff: datetime

    @property
    def filename(self) -> str:
        return f"dsmb-safety-{self.session}-{self.cutoff.strftime('%Y%m%dT%H%M%SZ')}.pdf"


def check_request(actor, session: str, arms: str | None) -> str | None:
    """Refuse an unknown session or arm mode (422) and a closed report to a blinded role (403)."""
    errors = {}
    if session not in SESSIONS:
        errors["session"] = [f"Choose one of {', '.join(SESSIONS)}."]
    if arms is not None and arms not in ARM_MODES:
        errors["arms"] = [f"Choose one of {', '.join(ARM_MODES)}."]
    if session == "open" and arms not in (None, "coded"):
        errors["arms"] = ["The open report shows no arms; --arms applies to the closed report."]
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)
    if session == "closed" and getattr(actor, "role", None) not in UNBLINDED_ROLES:
        raise Forbidden("The closed report is for the DSMB and the unblinded statistician only.")
    return (arms or "coded") if session == "closed" else None


def render_safety_report(actor, session: str, arms: str | None, cutoff) -> SafetyReport:
    """Read and lay out the report (no write); a closed report reads arms for ``actor``."""
    arms = check_request(actor, session, arms)
    cutoff = resolve_cutoff(cutoff)
    with cyclic_gc_paused():  # rows and flowables by the hundred thousand, few cycles
        return _render(actor, session, arms, cutoff)


def _render(actor, session: str, arms: str | None, cutoff) -> SafetyReport:
    from randomization.outputs import arms_for_closed_report

    data = load_safety_data(cutoff)  # in a snapshot of its own
    arm_of = None
    if session == "closed":
        with reading():
            try:
                arm_of = arms_for_closed_report(actor)
            finally:
                db.session.rollback()  # a read: end it before the long layout
    protocol = current_protocol()
    marks = PageMarks(session.upper(), cutoff_text(cutoff), protocol.trial_code)
    metadata = {
        "title": f"{protocol.trial_code} DSMB safety report ({session.upper()}), "
        f"data cut-off {cutoff_text(cutoff)}",
        "author": AUTHOR,
        "subject": f"DSMB safety report, {session} session",
        "creator": f"{AUTHOR} ({protocol.trial_code})",
    }
    pdf = render(build_story(data, session, arms, arm_of), marks, metadata)
    if session == "closed":  # its size would otherwise vary with per-arm counts
        pdf = pad_pdf(pdf)
    return SafetyReport(pdf, hashlib.sha256(pdf).hexdigest(), session, arms, cutoff)


def record_release(actor, report: SafetyReport) -> None:
    """The audit event of a generated report: session, arm mode, cut-off and a digest.

    The open report is pooled, so its size and SHA-256 may be read by anyone. The closed
    report is a function of the arms: its plain digest or size in a trail that blinded roles
    read would let them test guesses about per-arm results, so it gets a keyed digest only
    (``flask exports verify-release`` checks a file against it on the server).
    """
    detail = {"session": report.session, "arms": report.arms, "cutoff": report.cutoff.isoformat()}
    if report.session == "closed":
        detail["hmac_sha256"] = release_digest(report.pdf)
    else:
        detail.update(bytes=len(report.pdf), sha256=report.sha256)
    record_event(
        actor,
        "report_safety",
        entity_type="report",
        entity_id=f"safety_{report.session}",
        detail=detail,
    )


def produce_safety_report(actor, session: str, arms: str | None, cutoff) -> SafetyReport:
    """Build from read-only snapshots (a long read must not hold SQLite's write lock), then
    record the release and commit: the one operation behind the route and the command."""
    db.session.commit()  # end the authentication's transaction before the long read
    report = render_safety_report(actor, session, arms, cutoff)
    record_release(actor, report)
    db.session.commit()
    return report
