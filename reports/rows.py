"""The plain rows a safety report is computed from: no ORM, no database, no arms.

``reports.data`` fills these from the database for a data cut-off; tests build them by hand.
Participants are named by their public code (``S01-0007``) everywhere, so a hand-made
fixture needs no database ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class SiteRow:
    code: str
    name: str
    planned_enrollment: int


@dataclass(frozen=True)
class ParticipantRow:
    participant_id: str
    site: str
    sex: str
    year_of_birth: int
    consent_date: date
    # Site-local date of randomization (day 0); None if not randomized by the cut-off.
    randomized_on: date | None = None
    # First day with at least one tablet (trial.dosing's rule), as of the cut-off.
    first_dose: date | None = None
    # Final disposition as of the cut-off: status, date, reason (None: ongoing).
    disposition: str | None = None
    disposition_date: date | None = None
    disposition_reason: str | None = None
    # Treatment discontinuation as of the cut-off (the study drug stopped, follow-up goes on).
    treatment_stop_date: date | None = None
    # Emergency code-break (the fact and the time only; never the arm).
    unblinded_at: datetime | None = None

    @property
    def age_at_consent(self) -> int:
        return self.consent_date.year - self.year_of_birth


@dataclass(frozen=True)
class AdverseEventRow:
    participant_id: str
    term: str  # verbatim, as the site wrote it
    preferred_term: str | None  # None when uncoded
    system_organ_class: str | None
    onset_date: date
    grade: int
    end_date: date | None = None
    serious: bool = False
    seriousness_criteria: tuple[str, ...] = ()
    relatedness: str = "not_related"
    action_taken: str = "none"
    outcome: str = "recovering"


@dataclass(frozen=True)
class DoseRow:
    """Tablets per day from ``date`` on (until the participant's next dosing row)."""

    participant_id: str
    date: date
    tablets_per_day: int


@dataclass(frozen=True)
class LabRow:
    participant_id: str
    visit_date: date
    test: str  # ALT, AST, bilirubin (other tests are not loaded)
    value: float
    upper_limit_normal: float


@dataclass(frozen=True)
class VisitRow:
    participant_id: str
    visit_code: str
    status: str  # completed or missed
    visit_date: date | None


@dataclass(frozen=True)
class DeviationRow:
    participant_id: str
    category: str
    date: date
    automatic: bool


@dataclass(frozen=True)
class BlindingRow:
    """One respondent's answer of the blinding assessment, with the visit it was asked at."""

    participant_id: str
    visit_code: str
    visit_date: date | None
    respondent: str  # participant or investigator
    guess: str  # an arm name of the protocol, or "dont_know"
    confidence: str | None  # strongly or somewhat; None for don't know


@dataclass
class SafetyData:
    """Everything a safety report shows, as of ``cutoff``: what ``reports.data`` returns."""

    cutoff: datetime
    cutoff_date: date
    sites: list[SiteRow] = field(default_factory=list)
    participants: list[ParticipantRow] = field(default_factory=list)
    adverse_events: list[AdverseEventRow] = field(default_factory=list)
    doses: list[DoseRow] = field(default_factory=list)
    labs: list[LabRow] = field(default_factory=list)
    visits: list[VisitRow] = field(default_factory=list)
    deviations: list[DeviationRow] = field(default_factory=list)
    blinding: list[BlindingRow] = field(default_factory=list)
