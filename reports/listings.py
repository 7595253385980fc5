"""Participant listings: serious AEs, deaths, liver findings, emergency unblindings.

Ordered by site, participant and onset. An arm column appears only when ``arm_of`` is given
(the closed report); no listing carries a dose. Columns are sized to their content
(``reports.tables.content_widths``): a header or value wraps at a space, never inside a word,
and a date never wraps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reports.liver import LiverFinding
from reports.rows import AdverseEventRow, ParticipantRow
from reports.tables import content_widths, section, table
from trial.safety.definitions import TREATMENT_EMERGENT, is_treatment_emergent

CRITERIA_SHORT = {
    "death": "death",
    "life_threatening": "life-thr.",
    "hospitalisation": "hosp.",
    "disability": "disab.",
    "congenital_anomaly": "cong.",
    "other_important": "other",
}


def _with_arm(header, rows, pids, arm_of):
    """Insert an arm column after the participant column (closed report only)."""
    if arm_of is None:
        return header, rows
    header = header[:2] + ["Arm"] + header[2:]
    rows = [r[:2] + [arm_of[p]] + r[2:] for r, p in zip(rows, pids, strict=True)]
    return header, rows


def _listing(header: list[str], rows: list[list[str]]):
    """The listing's table, its columns sized to the header and the rows shown."""
    body = _empty(rows, len(header))
    return table([header], body, content_widths([header, *body]), align="LEFT")


def _term(event: AdverseEventRow) -> str:
    return event.preferred_term or f"[uncoded] {event.term}"


def _empty(body, width_count):
    return body or [["None"] + [""] * (width_count - 1)]


def sae_rows(events, people: Mapping[str, ParticipantRow], arm_of=None):
    """Listing 1's header and rows, as printed."""
    first = {pid: p.first_dose for pid, p in people.items()}
    chosen = sorted(
        (e for e in events if e.serious and e.participant_id in people),
        key=lambda e: (people[e.participant_id].site, e.participant_id, e.onset_date, _term(e)),
    )
    header = ["Site", "Participant", "Preferred term", "Onset", "End", "Grade", "Criteria",
              "Relatedness", "Action", "Outcome", "TE"]  # fmt: skip
    rows = [
        [
            people[e.participant_id].site,
            e.participant_id,
            _term(e),
            e.onset_date.isoformat(),
            e.end_date.isoformat() if e.end_date else "ongoing",
            str(e.grade),
            ", ".join(CRITERIA_SHORT.get(x, x) for x in e.seriousness_criteria),
            e.relatedness.replace("_", " "),
            e.action_taken.replace("_", " "),
            e.outcome.replace("_", " "),
            "yes" if is_treatment_emergent(e.onset_date, first[e.participant_id]) else "no",
        ]
        for e in chosen
    ]
    return _with_arm(header, rows, [e.participant_id for e in chosen], arm_of)


def sae_listing(title, events, people: Mapping[str, ParticipantRow], arm_of=None):
    return section(
        title,
        _listing(*sae_rows(events, people, arm_of)),
        "All serious adverse events of randomized participants reported by the cut-off, "
        f"ordered by site, participant and onset. TE: treatment-emergent ({TREATMENT_EMERGENT}).",
    )


def death_listing(title, events, people: Mapping[str, ParticipantRow], arm_of=None):
    fatal = {}
    for e in sorted(events, key=lambda e: e.onset_date):
        if e.outcome == "fatal" and e.participant_id in people:
            fatal.setdefault(e.participant_id, e)
    dead = sorted(
        (p for p in people.values() if p.participant_id in fatal or p.disposition == "death"),
        key=lambda p: (p.site, p.participant_id),
    )
    header = ["Site", "Participant", "Date of death", "Fatal adverse event", "Relatedness"]
    rows = []
    for p in dead:
        event = fatal.get(p.participant_id)
        day = p.disposition_date if p.disposition == "death" else None
        day = day or (event.end_date or event.onset_date if event else None)
        rows.append([
            p.site, p.participant_id, day.isoformat() if day else "-",
            _term(event) if event else "-",
            event.relatedness.replace("_", " ") if event else "-",
        ])  # fmt: skip
    header, rows = _with_arm(header, rows, [p.participant_id for p in dead], arm_of)
    return section(
        title,
        _listing(header, rows),
        "Participants with a fatal adverse event or a final disposition of death, by site "
        "and participant. Date: the disposition date, else the fatal event's end (or onset).",
    )


def liver_listing(title, findings: Sequence[LiverFinding], people, arm_of=None):
    chosen = sorted(findings, key=lambda f: (people[f.participant_id].site, f.participant_id))

    def peak(f, test):
        return f"{f.peak[test]:.2f}" if test in f.peak else "-"

    header = ["Site", "Participant", "Peak ALT x ULN", "Peak AST x ULN",
              "Peak bilirubin x ULN", "Potential Hy's law"]  # fmt: skip
    rows = [
        [people[f.participant_id].site, f.participant_id, peak(f, "ALT"), peak(f, "AST"),
         peak(f, "bilirubin"), f.hys_law_date.isoformat() if f.hys_law_date else "no"]
        for f in chosen
    ]  # fmt: skip
    header, rows = _with_arm(header, rows, [f.participant_id for f in chosen], arm_of)
    return section(
        title,
        _listing(header, rows),
        "Safety population participants meeting any criterion of the liver table; peaks over "
        "visits on or after the first dose; Hy's law: the first visit meeting the screen.",
    )


def unblinding_listing(title, people: Mapping[str, ParticipantRow], arm_of=None):
    chosen = sorted(
        (p for p in people.values() if p.unblinded_at is not None),
        key=lambda p: (p.site, p.participant_id),
    )
    header = ["Site", "Participant", "Code broken at (UTC)"]
    rows = [[p.site, p.participant_id, p.unblinded_at.strftime("%Y-%m-%d %H:%M")] for p in chosen]
    header, rows = _with_arm(header, rows, [p.participant_id for p in chosen], arm_of)
    return section(
        title,
        _listing(header, rows),
        "Emergency code-breaks by an investigator, by site and participant.",
    )
