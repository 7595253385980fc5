"""Build the DSMB safety report (open or closed) as PDF bytes, and record its release.

The open report is pooled: one Total column everywhere, no arm, no dose, no figure by arm.
The closed report adds one column per arm, coded A, B, ... in the protocol's arm order (or
named with ``arms="named"``); the code key is never printed. Both share the table numbering.

Reproducibility: the report is dated by its data cut-off. Its "generated" time is the
cut-off itself, the PDF is written in reportlab's invariant mode with fixed metadata, and
every order is explicit, so the same data and cut-off give the same bytes. The wall-clock
time of each generation is the audit event's time, recorded with the file's digest (keyed,
for the closed report: see ``randomization.release``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from reportlab.platypus import PageBreak, Paragraph, Spacer

from exports.snapshot import cyclic_gc_paused
from randomization.release import pad_pdf, release_digest
from reports import blinding, charts, listings, liver, summaries
from reports import counting as c
from reports import tables as t
from reports.data import load_safety_data, resolve_cutoff
from reports.layout import STYLES, PageMarks, render
from reports.options import ARM_MODES, SESSIONS
from reports.rows import SafetyData
from trial.audit.services import record_event
from trial.auth.roles import UNBLINDED_ROLES
from trial.database import reading
from trial.errors import Forbidden, ValidationFailed
from trial.extensions import db
from trial.protocol import current_protocol
from trial.safety.definitions import SAFETY_POPULATION

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


def arm_labels(mode: str) -> list[tuple[str, str]]:
    """(arm name, printed label): the names in protocol order, or A, B, ... in the secret
    coding order (not the protocol's, which anyone may know)."""
    from randomization.outputs import closed_report_coding

    if mode == "named":
        return [(arm, arm.capitalize()) for arm in current_protocol().arms]
    return [(arm, chr(ord("A") + i)) for i, arm in enumerate(closed_report_coding())]


def cutoff_text(cutoff: datetime) -> str:
    return cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")


def title_page(protocol, session: str, arms: str | None, cutoff: datetime) -> list:
    word = session.upper()
    audience = (
        "Closed session: the DSMB and the unblinded statistician only. Results by arm"
        + (", arms coded; the code is held by the unblinded statistician." if arms == "coded"
           else ", arms named.")
        if session == "closed"
        else "Open session: the DSMB, the sponsor and data management. Pooled results only."
    )  # fmt: skip
    return [
        Spacer(1, 60),
        Paragraph(t.escape(protocol.trial_code), STYLES["title"]),
        Paragraph(t.escape(protocol.title), STYLES["subtitle"]),
        Spacer(1, 24),
        Paragraph("Data Safety Monitoring Board - safety report", STYLES["title"]),
        Paragraph(word, STYLES["session"]),
        Spacer(1, 24),
        Paragraph(f"Data cut-off: {cutoff_text(cutoff)}", STYLES["subtitle"]),
        Paragraph(f"Generated: {cutoff_text(cutoff)}", STYLES["subtitle"]),
        Spacer(1, 12),
        Paragraph(t.escape(audience), STYLES["body"]),
        Paragraph(
            "A report is dated by its data cut-off, so the same data and cut-off always give "
            "the same file. Each generation is recorded in the audit trail with its wall-clock "
            "time and the file's digest (for a closed report a digest keyed by the server, so "
            "that the trail reveals nothing about the arms).",
            STYLES["body"],
        ),
        PageBreak(),
    ]


def build_story(data: SafetyData, session: str, arms: str | None, arm_of=None) -> list:
    """Every section, numbered the same in both reports; by arm only when ``arm_of`` is given."""
    protocol = current_protocol()
    labels = arm_labels(arms or "coded") if arm_of is not None else []
    label_of = None if arm_of is None else {pid: dict(labels)[arm] for pid, arm in arm_of.items()}
    people = {p.participant_id: p for p in data.participants}
    population = c.safety_population(data.participants)
    randomized = summaries.randomized(data.participants)
    columns = c.build_columns(population, arm_of, labels)
    rand_columns = c.build_columns(randomized, arm_of, labels)
    emergent = c.treatment_emergent(
        [e for e in data.adverse_events if e.participant_id in population],
        c.first_doses(data.participants),
    )
    safety_events = [e for e in data.adverse_events if e.participant_id in population]
    randomized_people = {pid: people[pid] for pid in randomized}
    rows = c.incidence(emergent, columns)
    findings = liver.liver_findings(data.labs, c.first_doses(data.participants))
    findings = {pid: f for pid, f in findings.items() if pid in population}

    story = title_page(protocol, session, arms, data.cutoff)
    story += enrollment_table(data)
    story += t.section(
        "Figure 1. Enrollment over time by site",
        charts.enrollment_figure(*summaries.enrollment_curve(data)),
        "Cumulative randomized participants at each month's end. Left: all sites against the "
        "plan, linear accrual of the sites' total planned enrollment over "
        f"{summaries.PLANNED_ACCRUAL_MONTHS} months from the first consent. Right: each site, "
        "on a scale of its own (the largest site's count), so that the sites can be compared; "
        "each site's planned enrollment is in Table 1.",
    )
    story += t.simple_table(
        "Table 2. Participant disposition (CONSORT)",
        rand_columns,
        summaries.disposition(list(randomized_people.values()), rand_columns),
        [
            f"{len(data.participants)} registered, {len(data.participants) - len(randomized)} "
            f"not randomized by the cut-off. N: randomized participants in the column.",
            c.PERCENT_RULE,
            "Final disposition as recorded by the cut-off; ongoing: none recorded yet.",
        ],
    )
    story += t.simple_table(
        "Table 3. Baseline characteristics",
        rand_columns,
        summaries.baseline(list(randomized_people.values()), rand_columns, data.sites),
        ["N: randomized participants in the column. Age: year of consent minus year of birth.",
         c.PERCENT_RULE],
    )  # fmt: skip
    story += t.simple_table(
        "Table 4. Exposure to study drug",
        columns,
        summaries.exposure(data, columns, protocol.dosing["max_tablets_per_day"]),
        [
            c.DENOMINATOR_RULE,
            "Doses in tablets per day (identical for every arm). Days on study drug: days with "
            "at least one tablet from the first dose to the final disposition or the cut-off; "
            "a dose holds until the next dosing record.",
        ],
    )
    story += t.overview_table("Table 5. Adverse event overview", c.ae_overview(
        safety_events, [people[p] for p in population]), columns)  # fmt: skip
    story += t.incidence_table(
        "Table 6. Treatment-emergent adverse events by system organ class and preferred term",
        c.any_event_row(emergent, columns),
        rows,
        columns,
    )
    if arm_of is not None and len(columns) >= 3:
        story += t.section(
            "Figure 2. Adverse event dot plot",
            charts.dot_plot(rows, columns),
            "Left: treatment-emergent incidence (% of N) per preferred term in each arm. "
            f"Right: risk difference {columns[0].label} - {columns[1].label} with Newcombe's "
            "hybrid score 95% confidence interval. The 30 most frequent terms, ordered by "
            "risk difference. Verbatim terms awaiting coding, if any, are in italics and marked "
            "[uncoded]: they are not MedDRA preferred terms (Table 6 lists them apart).",
        )
    else:
        story += t.section(
            "Figure 2. Adverse event dot plot",
            Paragraph("Shown in the closed report only (it compares arms).", STYLES["body"]),
            "The open report is pooled.",
        )
    story += t.grade_table(
        "Table 7. Worst grade of treatment-emergent adverse events",
        c.worst_grade_distribution(emergent, population),
        columns,
    )
    story += t.special_interest_table(
        "Table 8. Adverse events of special interest",
        c.special_interest(emergent),
        columns,
    )
    story += listings.sae_listing(
        "Listing 1. Serious adverse events", data.adverse_events, randomized_people, label_of
    )
    story += listings.death_listing(
        "Listing 2. Deaths", data.adverse_events, randomized_people, label_of
    )
    story += t.liver_table(
        "Table 9. Liver laboratory abnormalities", liver.liver_summary(findings), columns
    )
    story += listings.liver_listing(
        "Listing 3. Participants with liver abnormalities", liver.flagged_liver(findings), people,
        label_of,
    )  # fmt: skip
    story += listings.unblinding_listing(
        "Listing 4. Emergency unblindings", randomized_people, label_of
    )
    story += completeness_tables(data, protocol)
    title = "Table 12. Blinding assessment: guesses of the arm"
    broken = {pid for pid in randomized if people[pid].unblinded_at is not None}
    if arm_of is None:
        story += blinding.open_table(
            title, data.blinding, randomized, broken, protocol.visits, protocol.arms
        )
    else:
        story += blinding.closed_table(
            title, data.blinding, randomized, broken, protocol.visits, protocol.arms, labels,
            arm_of,
        )  # fmt: skip
    return story


def enrollment_table(data: SafetyData) -> list:
    enrolled = summaries.enrollment_by_site(data)

    def share(n: int, planned: int) -> str:
        return c.n_pct(n, planned) if planned else "-"  # nothing planned: no percentage

    body = [
        [e.site.code, e.site.planned_enrollment, e.registered, e.randomized, e.dosed,
         share(e.randomized, e.site.planned_enrollment)]
        for e in enrolled
    ]  # fmt: skip
    planned = sum(e.site.planned_enrollment for e in enrolled)
    randomized = sum(e.randomized for e in enrolled)
    body.append(["All sites", planned, sum(e.registered for e in enrolled), randomized,
                 sum(e.dosed for e in enrolled), share(randomized, planned)])  # fmt: skip
    return t.section(
        "Table 1. Enrollment by site",
        t.table(
            [["Site", "Planned", "Registered", "Randomized", "Dosed", "Randomized / planned"]],
            [[str(v) for v in row] for row in body],
            [70, 80, 80, 80, 80, 133],
        ),
        "Registered: consented participants entered by the cut-off. "
        f"Dosed: {SAFETY_POPULATION} (the safety population). Randomized / planned: n (%) of "
        "the site's planned enrollment, rounded half up.",
    )


def completeness_tables(data: SafetyData, protocol) -> list:
    rows = summaries.completeness(data, protocol.visits)
    body = [[label, str(e), str(done), str(missed), pct] for label, e, done, missed, pct in rows]
    flow = t.section(
        "Table 10. Data completeness by visit",
        t.table(
            [["Visit", "Expected", "Completed", "Missed", "Completed n (%)"]],
            body,
            [170, 80, 80, 80, 113],
        ),  # fmt: skip
        summaries.COMPLETENESS_RULE + " Pooled over arms. " + c.PERCENT_RULE,
    )
    devs = summaries.deviation_counts(data)
    flow += t.section(
        "Table 11. Protocol deviations by category",
        t.table(
            [["Category", "Deviations", "Participants"]],
            [[k.replace("_", " "), str(n), str(p)] for k, n, p in devs] or [["None", "", ""]],
            [243, 140, 140],
        ),  # fmt: skip
        "Deviations recorded by the cut-off (automatic ones included), pooled over arms.",
    )
    return flow


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
