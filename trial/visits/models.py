from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trial.database import UTCDateTime
from trial.extensions import db
from trial.protocol import current_protocol
from trial.records.models import CapturedRecord, active_unique_index
from trial.records.registry import register_record_type

SIGNATURE_MEANING = "reviewed and approved"


@register_record_type
class Visit(CapturedRecord, db.Model):
    """A scheduled visit, completed (with its forms) or recorded as missed."""

    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("status IN ('completed', 'missed')", name="known_status"),
        CheckConstraint("status = 'missed' OR visit_date IS NOT NULL", name="completed_has_date"),
        CheckConstraint(
            "signature_status IN ('unsigned', 'signed', 'invalidated')",
            name="known_signature_status",
        ),
        active_unique_index("uq_visits_participant_code", "participant_id", "visit_code"),
    )
    ENTITY = "visit"
    AUDITED_FIELDS = ("visit_code", "visit_date", "status", "missed_reason", "out_of_window_reason")

    visit_code: Mapped[str] = mapped_column(String(40))
    visit_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    missed_reason: Mapped[str | None] = mapped_column(Text)
    # Why a visit is recorded outside its window (required then; kept on the automatic
    # deviation too): a visit code that does not fit its date is refused without one.
    out_of_window_reason: Mapped[str | None] = mapped_column(Text)
    signature_status: Mapped[str] = mapped_column(String(20), default="unsigned")
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    signature_meaning: Mapped[str | None] = mapped_column(String(80))

    signer = relationship("User", foreign_keys="Visit.signed_by_id", lazy="joined")

    @property
    def signer_name(self) -> str | None:
        return self.signer.username if self.signer is not None else None

    @property
    def expected_forms(self) -> tuple[str, ...]:
        """The forms the protocol names for this visit (none for a missed one)."""
        if self.status != "completed":
            return ()
        try:
            return current_protocol().visit(self.visit_code).forms
        except KeyError:
            return ()

    @property
    def missing_forms(self) -> list[str]:
        """Expected forms this visit does not hold."""
        held = {
            "drinking": bool(self.drinking_days),
            "ocds": self.ocds is not None,
            "ciwa": self.ciwa is not None,
            "vitals": self.vitals is not None,
            "labs": bool(self.labs),
            "blinding": bool(self.blinding),
        }
        return [form for form in self.expected_forms if not held[form]]


def _forms(model: str, *, many: bool = True, order_by: str | None = None):
    """Read-only link from a visit to its active (not entered-in-error) forms."""
    return relationship(
        model,
        primaryjoin=f"and_(Visit.id == foreign({model}.visit_id), "
        f"{model}.entered_in_error.is_(False))",
        viewonly=True,
        uselist=many,
        order_by=order_by,
        lazy="select",
    )


Visit.drinking_days = _forms("DrinkingDay", order_by="DrinkingDay.day")
Visit.ocds = _forms("OcdsAssessment", many=False)
Visit.ciwa = _forms("CiwaAssessment", many=False)
Visit.vitals = _forms("Vitals", many=False)
Visit.labs = _forms("LabResult", order_by="LabResult.test")
# The participant's guess before the investigator's, as the form asks them
# (BLINDING_RESPONDENTS): "participant" sorts after "investigator", so descending.
Visit.blinding = _forms("BlindingAssessment", order_by="BlindingAssessment.respondent.desc()")
