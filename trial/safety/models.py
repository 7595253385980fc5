"""Adverse events, the sponsor's MedDRA dictionary and expedited (serious AE) reports.

The rules of DESIGN section 4 are also check constraints, so no code path (a later feature,
a script, a hand-written SQL fix) can store an AE that the API would refuse.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from trial.database import UTCDateTime
from trial.extensions import db
from trial.records.models import CapturedRecord
from trial.records.registry import register_record_type

# ICH E2A seriousness criteria, in the order forms list them.
SERIOUSNESS_CRITERIA = (
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "other_important",
)
RELATEDNESS = ("not_related", "unlikely", "possible", "probable", "definite")
ACTIONS_TAKEN = ("none", "dose_reduced", "drug_interrupted", "drug_withdrawn", "not_applicable")
OUTCOMES = (
    "recovered",
    "recovering",
    "not_recovered",
    "recovered_with_sequelae",
    "fatal",
    "unknown",
)
CODING_SOURCES = ("builtin", "sponsor", "uncoded")
# open: owed by the site; submitted: sent by the site; acknowledged: received by the safety
# desk; withdrawn: no longer owed (the AE was downgraded or entered in error while open).
EXPEDITED_STATUSES = ("open", "submitted", "acknowledged", "withdrawn")
TERM_MAX = 200
SOC_MAX = 120


def criterion_column(criterion: str) -> str:
    return f"criterion_{criterion}"


CRITERION_COLUMNS = tuple(criterion_column(c) for c in SERIOUSNESS_CRITERIA)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_ANY_CRITERION = "(" + " OR ".join(CRITERION_COLUMNS) + ")"


@register_record_type
class AdverseEvent(CapturedRecord, db.Model):
    """One adverse event as reported by the site, with its MedDRA coding.

    Seriousness criteria are six boolean columns rather than one comma-joined text: the
    database can then enforce "serious exactly when at least one criterion" and "fatal needs
    the death criterion" as plain check constraints, reports count each criterion with a
    simple SUM, and the audit trail records each criterion ticked or unticked as its own
    field. The API still reads and writes them as one list, ``seriousness_criteria``.

    Treatment-emergent is not stored: it depends on the first dose date, which the dosing
    module may record or correct after the AE was entered, so a stored flag could go stale.
    """

    __tablename__ = "adverse_events"
    __table_args__ = (
        CheckConstraint("grade BETWEEN 1 AND 5", name="grade_range"),
        CheckConstraint("length(trim(term)) > 0", name="term_not_blank"),
        CheckConstraint("end_date IS NULL OR end_date >= onset_date", name="end_after_onset"),
        CheckConstraint(_in("relatedness", RELATEDNESS), name="known_relatedness"),
        CheckConstraint(_in("action_taken", ACTIONS_TAKEN), name="known_action"),
        CheckConstraint(_in("outcome", OUTCOMES), name="known_outcome"),
        CheckConstraint(_in("coding_source", CODING_SOURCES), name="known_coding_source"),
        CheckConstraint(
            f"(serious AND {_ANY_CRITERION}) OR (NOT serious AND NOT {_ANY_CRITERION})",
            name="serious_iff_criterion",
        ),
        CheckConstraint(
            "(grade = 5 AND outcome = 'fatal' AND criterion_death)"
            " OR (grade <> 5 AND outcome <> 'fatal' AND NOT criterion_death)",
            name="fatal_consistent",
        ),
        CheckConstraint(
            "(coding_source = 'uncoded' AND preferred_term IS NULL"
            " AND system_organ_class IS NULL)"
            " OR (coding_source <> 'uncoded' AND preferred_term IS NOT NULL"
            " AND system_organ_class IS NOT NULL)",
            name="coding_complete",
        ),
        # The 24-hour clock of a serious event runs from the site's awareness of it.
        CheckConstraint("NOT serious OR awareness_date IS NOT NULL", name="awareness_when_serious"),
        CheckConstraint(
            "awareness_date IS NULL OR awareness_date >= onset_date", name="awareness_after_onset"
        ),
    )

    ENTITY = "adverse_event"
    AUDITED_FIELDS = (
        "term",
        "onset_date",
        "end_date",
        "grade",
        "serious",
        *CRITERION_COLUMNS,
        "awareness_date",
        "relatedness",
        "action_taken",
        "outcome",
        "preferred_term",
        "system_organ_class",
        "coding_source",
    )
    # The fields a site enters (the rest of AUDITED_FIELDS is derived by coding).
    ENTERED_FIELDS = (
        "term",
        "onset_date",
        "end_date",
        "grade",
        "serious",
        "seriousness_criteria",
        "awareness_date",
        "relatedness",
        "action_taken",
        "outcome",
    )

    # The verbatim term as the site wrote it.
    term: Mapped[str] = mapped_column(String(TERM_MAX))
    onset_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    # CTCAE grade 1-5.
    grade: Mapped[int] = mapped_column(Integer)
    serious: Mapped[bool] = mapped_column(Boolean)
    criterion_death: Mapped[bool] = mapped_column(Boolean, server_default=false())
    criterion_life_threatening: Mapped[bool] = mapped_column(Boolean, server_default=false())
    criterion_hospitalisation: Mapped[bool] = mapped_column(Boolean, server_default=false())
    criterion_disability: Mapped[bool] = mapped_column(Boolean, server_default=false())
    criterion_congenital_anomaly: Mapped[bool] = mapped_column(Boolean, server_default=false())
    criterion_other_important: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The site-local date the site learned of the event (of a serious one: that it was
    # serious); required when serious, not before onset. The expedited clock starts here.
    awareness_date: Mapped[date | None] = mapped_column(Date)
    relatedness: Mapped[str] = mapped_column(String(20))
    action_taken: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(30))
    # MedDRA coding; both NULL (and coding_source 'uncoded') until the term is coded.
    preferred_term: Mapped[str | None] = mapped_column(String(TERM_MAX), index=True)
    system_organ_class: Mapped[str | None] = mapped_column(String(SOC_MAX))
    coding_source: Mapped[str] = mapped_column(String(10), index=True)

    @property
    def seriousness_criteria(self) -> list[str]:
        return [c for c in SERIOUSNESS_CRITERIA if getattr(self, criterion_column(c))]

    @property
    def coded(self) -> bool:
        return self.preferred_term is not None


class MeddraTerm(db.Model):
    """One term of the sponsor's licensed MedDRA dictionary (``flask meddra load``).

    Takes precedence over the built-in dictionary shipped as ``meddra_terms.csv``. ``term``
    is the normalised lookup key (case-folded, spaces collapsed); ``source`` names the file
    and its SHA-256 so each coding can be traced to the dictionary version that made it.
    """

    __tablename__ = "meddra_terms"
    __table_args__ = (
        CheckConstraint("length(term) > 0", name="term_not_empty"),
        CheckConstraint("length(preferred_term) > 0", name="pt_not_empty"),
        CheckConstraint("length(soc) > 0", name="soc_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    term: Mapped[str] = mapped_column(String(TERM_MAX), unique=True)
    preferred_term: Mapped[str] = mapped_column(String(TERM_MAX))
    soc: Mapped[str] = mapped_column(String(SOC_MAX))
    source: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExpeditedReport(db.Model):
    """The 24-hour expedited report a serious AE owes the sponsor's safety desk.

    One per AE at most: an AE made serious again after a downgrade reopens its report. Due
    from the AE's awareness date (``trial.safety.expedited.due_at``), not from when the row
    was typed; submitted by the site and acknowledged by the safety desk, each with who and
    when. Carries no arm.
    """

    __tablename__ = "expedited_reports"
    __table_args__ = (
        CheckConstraint(_in("status", EXPEDITED_STATUSES), name="known_status"),
        CheckConstraint(
            "status NOT IN ('submitted', 'acknowledged') OR submitted_at IS NOT NULL",
            name="submitted_recorded",
        ),
        CheckConstraint(
            "status <> 'acknowledged' OR (acknowledged_at IS NOT NULL"
            " AND acknowledged_by_id IS NOT NULL)",
            name="acknowledged_recorded",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    adverse_event_id: Mapped[int] = mapped_column(ForeignKey("adverse_events.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
