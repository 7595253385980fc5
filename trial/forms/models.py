"""Visit forms. Derived scores (totals, subscales) are computed from the items on read, never
stored, so a corrected item can never leave a stale total behind."""

from __future__ import annotations

from datetime import date

from sqlalchemy import CheckConstraint, Date, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from trial.extensions import db
from trial.protocol import DRINKS_PER_DAY_CEILING
from trial.records.models import CapturedRecord, active_unique_index
from trial.records.registry import register_record_type

# The OCDS and its subscales, defined here once: the model's scores, the API's schemas, the
# database's checks and the bundle's columns (exports.tables.visits) all read these.
OCDS_ITEMS = tuple(f"item_{n}" for n in range(1, 15))
OCDS_ITEM_MAX = 4  # each item is scored 0-4
OCDS_OBSESSIVE = OCDS_ITEMS[:6]  # items 1-6: obsessive thoughts about drinking
OCDS_COMPULSIVE = OCDS_ITEMS[6:]  # items 7-14: drinking behaviour
# CIWA-Ar items and their maxima (orientation 0-4, the others 0-7): total 0-67.
CIWA_ITEMS = {
    "nausea_vomiting": 7,
    "tremor": 7,
    "paroxysmal_sweats": 7,
    "anxiety": 7,
    "agitation": 7,
    "tactile_disturbances": 7,
    "auditory_disturbances": 7,
    "visual_disturbances": 7,
    "headache": 7,
    "orientation": 4,
}
# Physiological ranges of the vital signs (inclusive; weight may be left empty): plausibility
# limits of the measurement, not settings of a protocol. Written once here for the database's
# checks, the API's schema (trial.forms.schemas) and the bundle's dictionary.
VITALS_RANGES = {
    "systolic_bp": (60, 260),
    "diastolic_bp": (30, 160),
    "heart_rate": (30, 220),
    "weight_kg": (30, 300),
}
# The blinding assessment (Bang, Ni and Davis 2004): who is asked, and how sure a guess is.
# A guess names one of the protocol's arms or "dont_know"; a guess of an arm carries its
# confidence, "don't know" none. A guess is what someone believes, never the arm itself.
BLINDING_RESPONDENTS = ("participant", "investigator")
DONT_KNOW = "dont_know"
BLINDING_CONFIDENCE = ("strongly", "somewhat")
LAB_UNITS = {
    "GGT": ("U/L", "ukat/L"),
    "ALT": ("U/L", "ukat/L"),
    "AST": ("U/L", "ukat/L"),
    "bilirubin": ("umol/L", "mg/dL"),
    "CDT": ("%",),
}


@register_record_type
class DrinkingDay(CapturedRecord, db.Model):
    """Timeline Followback: standard drinks on one calendar day (one row per day)."""

    __tablename__ = "drinking_days"
    __table_args__ = (
        # The database's last guard; the protocol's limit is checked by the service.
        CheckConstraint(
            f"standard_drinks >= 0 AND standard_drinks <= {DRINKS_PER_DAY_CEILING}",
            name="drinks_range",
        ),
        active_unique_index("uq_drinking_days_participant_day", "participant_id", "day"),
    )
    ENTITY = "drinking_day"
    AUDITED_FIELDS = ("day", "standard_drinks")

    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    standard_drinks: Mapped[float] = mapped_column(Float)


@register_record_type
class OcdsAssessment(CapturedRecord, db.Model):
    """Obsessive Compulsive Drinking Scale: 14 items scored 0-4."""

    __tablename__ = "ocds_assessments"
    __table_args__ = (
        *(
            CheckConstraint(f"{item} BETWEEN 0 AND {OCDS_ITEM_MAX}", name=f"{item}_range")
            for item in OCDS_ITEMS
        ),
        active_unique_index("uq_ocds_assessments_visit", "visit_id"),
    )
    ENTITY = "ocds"
    AUDITED_FIELDS = OCDS_ITEMS

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    item_1: Mapped[int] = mapped_column(Integer)
    item_2: Mapped[int] = mapped_column(Integer)
    item_3: Mapped[int] = mapped_column(Integer)
    item_4: Mapped[int] = mapped_column(Integer)
    item_5: Mapped[int] = mapped_column(Integer)
    item_6: Mapped[int] = mapped_column(Integer)
    item_7: Mapped[int] = mapped_column(Integer)
    item_8: Mapped[int] = mapped_column(Integer)
    item_9: Mapped[int] = mapped_column(Integer)
    item_10: Mapped[int] = mapped_column(Integer)
    item_11: Mapped[int] = mapped_column(Integer)
    item_12: Mapped[int] = mapped_column(Integer)
    item_13: Mapped[int] = mapped_column(Integer)
    item_14: Mapped[int] = mapped_column(Integer)

    @property
    def total(self) -> int:
        return sum(getattr(self, item) for item in OCDS_ITEMS)

    @property
    def obsessive_subscale(self) -> int:
        return sum(getattr(self, item) for item in OCDS_OBSESSIVE)

    @property
    def compulsive_subscale(self) -> int:
        return sum(getattr(self, item) for item in OCDS_COMPULSIVE)


@register_record_type
class CiwaAssessment(CapturedRecord, db.Model):
    """CIWA-Ar alcohol withdrawal scale: 10 items, total 0-67."""

    __tablename__ = "ciwa_assessments"
    __table_args__ = (
        *(
            CheckConstraint(f"{item} BETWEEN 0 AND {top}", name=f"{item}_range")
            for item, top in CIWA_ITEMS.items()
        ),
        active_unique_index("uq_ciwa_assessments_visit", "visit_id"),
    )
    ENTITY = "ciwa"
    AUDITED_FIELDS = tuple(CIWA_ITEMS)

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    nausea_vomiting: Mapped[int] = mapped_column(Integer)
    tremor: Mapped[int] = mapped_column(Integer)
    paroxysmal_sweats: Mapped[int] = mapped_column(Integer)
    anxiety: Mapped[int] = mapped_column(Integer)
    agitation: Mapped[int] = mapped_column(Integer)
    tactile_disturbances: Mapped[int] = mapped_column(Integer)
    auditory_disturbances: Mapped[int] = mapped_column(Integer)
    visual_disturbances: Mapped[int] = mapped_column(Integer)
    headache: Mapped[int] = mapped_column(Integer)
    orientation: Mapped[int] = mapped_column(Integer)

    @property
    def total(self) -> int:
        return sum(getattr(self, item) for item in CIWA_ITEMS)


def _between(name: str) -> str:
    low, high = VITALS_RANGES[name]
    return f"{name} BETWEEN {low} AND {high}"


@register_record_type
class Vitals(CapturedRecord, db.Model):
    __tablename__ = "vitals"
    __table_args__ = (
        CheckConstraint(_between("systolic_bp"), name="systolic_range"),
        CheckConstraint(_between("diastolic_bp"), name="diastolic_range"),
        CheckConstraint("diastolic_bp < systolic_bp", name="diastolic_below_systolic"),
        CheckConstraint(_between("heart_rate"), name="heart_rate_range"),
        CheckConstraint(f"weight_kg IS NULL OR {_between('weight_kg')}", name="weight_range"),
        active_unique_index("uq_vitals_visit", "visit_id"),
    )
    ENTITY = "vitals"
    AUDITED_FIELDS = ("systolic_bp", "diastolic_bp", "heart_rate", "weight_kg")

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    systolic_bp: Mapped[int] = mapped_column(Integer)
    diastolic_bp: Mapped[int] = mapped_column(Integer)
    heart_rate: Mapped[int] = mapped_column(Integer)
    weight_kg: Mapped[float | None] = mapped_column(Float)


@register_record_type
class LabResult(CapturedRecord, db.Model):
    """One liver or alcohol marker with its unit and the lab's upper limit of normal."""

    __tablename__ = "lab_results"
    __table_args__ = (
        CheckConstraint(f"test IN ({', '.join(repr(t) for t in LAB_UNITS)})", name="known_test"),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("upper_limit_normal > 0", name="uln_positive"),
        active_unique_index("uq_lab_results_visit_test", "visit_id", "test"),
    )
    ENTITY = "lab_result"
    AUDITED_FIELDS = ("test", "value", "unit", "upper_limit_normal")

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    test: Mapped[str] = mapped_column(String(20))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    upper_limit_normal: Mapped[float] = mapped_column(Float)

    @property
    def times_uln(self) -> float:
        return self.value / self.upper_limit_normal


_CONFIDENCES = ", ".join(repr(c) for c in BLINDING_CONFIDENCE)


@register_record_type
class BlindingAssessment(CapturedRecord, db.Model):
    """One respondent's guess of the participant's arm at a visit (at most one each)."""

    __tablename__ = "blinding_assessments"
    __table_args__ = (
        CheckConstraint(
            f"respondent IN ({', '.join(repr(r) for r in BLINDING_RESPONDENTS)})",
            name="known_respondent",
        ),
        # "IS NOT NULL" too: a NULL in IN (...) is unknown, which a CHECK lets through.
        CheckConstraint(
            f"(guess = '{DONT_KNOW}' AND confidence IS NULL) OR (guess <> '{DONT_KNOW}' AND "
            f"confidence IS NOT NULL AND confidence IN ({_CONFIDENCES}))",
            name="confidence_of_a_guess",
        ),
        active_unique_index("uq_blinding_assessments_visit_respondent", "visit_id", "respondent"),
    )
    ENTITY = "blinding_assessment"
    AUDITED_FIELDS = ("respondent", "guess", "confidence")

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    respondent: Mapped[str] = mapped_column(String(20))
    guess: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[str | None] = mapped_column(String(20))


# Each form a visit may hold, by the name the protocol's visits use for it.
FORM_MODELS = {
    "drinking": DrinkingDay,
    "ocds": OcdsAssessment,
    "ciwa": CiwaAssessment,
    "vitals": Vitals,
    "labs": LabResult,
    "blinding": BlindingAssessment,
}
