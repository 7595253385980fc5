"""Lay out the DSMB safety report's sections, in order, as reportlab flowables.

The open and the closed report are one story: the same sections with the same numbers, by arm
only when the arms are given (``build_story``'s ``arm_of``). Reading the data, checking the
request, rendering and recording the release are ``reports.pdf``'s.
"""

from __future__ import annotations

from datetime import datetime

from reportlab.platypus import PageBreak, Paragraph, Spacer

from reports import blinding, charts, listings, liver, summaries
from reports import counting as c
from reports import tables as t
from reports.layout import STYLES
from reports.rows import SafetyData
from trial.protocol import current_protocol
from trial.safety.definitions import SAFETY_POPULATION


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
