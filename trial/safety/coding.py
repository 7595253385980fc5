"""Code AEs by hand (a data manager, over HTTP) and load a sponsor's licensed MedDRA
dictionary, bringing existing AEs up to it; every change audited.

A data manager codes a verbatim term no dictionary knows ("fell down stairs") to a preferred
term of the loaded dictionaries, or re-codes a coded one, always with a reason: the
correction's audit rows hold the old and new PT, SOC and source, who and why. The PT must be a
preferred term (not one of its synonyms) of the sponsor's dictionary or, failing that, of the
built-in one, the same order the automatic coding follows; its SOC comes from the dictionary,
never from the person.


Loading replaces the previous sponsor dictionary whole (a licensed dictionary is a complete
MedDRA version, not a patch). Nothing is re-coded silently: AEs that were uncoded and are now
found are coded, each change an audited correction whose reason names the file and its
SHA-256; AEs already coded keep their coding unless the operator asks for ``recode_coded``,
and the result says how many would change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from trial.audit.services import record_event
from trial.database import utcnow
from trial.errors import Conflict
from trial.extensions import db
from trial.participants.models import Participant
from trial.records.versions import check_version
from trial.safety.meddra import (
    Coding,
    builtin_dictionary,
    code_term,
    decode_dictionary_file,
    file_sha256,
    normalise_term,
    parse_dictionary,
    replace_sponsor_dictionary,
)
from trial.safety.models import AdverseEvent, MeddraTerm
from trial.safety.schemas import CodingSchema
from trial.safety.services import apply_correction, get_adverse_event
from trial.validation import checks_body, raise_errors


def preferred_term_coding(preferred_term: str) -> Coding | None:
    """The coding a preferred term stands for (canonical spelling, its primary SOC, the
    dictionary that has it), or None when no loaded dictionary has it as a preferred term."""
    key = normalise_term(preferred_term)
    row = db.session.execute(
        select(MeddraTerm.preferred_term, MeddraTerm.soc).where(MeddraTerm.term == key)
    ).first()
    if row is not None and normalise_term(row.preferred_term) == key:
        return Coding(row.preferred_term, row.soc, "sponsor")
    entry = builtin_dictionary().get(key)
    if entry is not None and normalise_term(entry.preferred_term) == key:
        return Coding(entry.preferred_term, entry.soc, "builtin")
    return None


def _coding_or_refuse(preferred_term: str) -> Coding:
    coding = preferred_term_coding(preferred_term)
    if coding is None:
        synonym = code_term(preferred_term)
        hint = (
            f" It is a synonym of the preferred term {synonym.preferred_term!r}: code to that."
            if synonym.preferred_term is not None
            else " Find terms with GET /api/v1/meddra/terms?q=..."
        )
        raise_errors(
            {
                "preferred_term": [
                    f"{preferred_term!r} is not a preferred term of the loaded "
                    f"MedDRA dictionary.{hint}"
                ]
            }
        )
    return coding


@checks_body(CodingSchema)
def _check_coding(actor, values, failed, record_id):
    record, _participant = get_adverse_event(actor, record_id)
    if record.entered_in_error:
        raise Conflict("This adverse event was marked entered in error and can no longer change.")
    if "preferred_term" in values:
        _coding_or_refuse(values["preferred_term"])


def code_adverse_event(
    actor,
    record_id: int,
    preferred_term: str,
    reason: str,
    *,
    expected_version: int | None = None,
):
    """Code (or re-code) an AE's verbatim term to a preferred term, with a reason.

    In the order a person is told: an AE not found or at another site (404), one entered in
    error (409), a stale ``expected_version`` (412), a PT no loaded dictionary has (422
    naming ``preferred_term``), a coding the AE has already (422 ``no_change``). The verbatim
    is never changed. Returns (AE, participant).
    """
    record, participant = get_adverse_event(actor, record_id, lock=True)
    if record.entered_in_error:
        raise Conflict("This adverse event was marked entered in error and can no longer change.")
    check_version(record, expected_version, {"preferred_term": record.preferred_term})
    coding = _coding_or_refuse(preferred_term)
    apply_correction(
        actor,
        record,
        participant,
        coding.as_values(),
        reason,
        expected_version=expected_version,
        require_change=True,
    )
    return record, participant


@dataclass(frozen=True)
class LoadResult:
    source: str
    terms: int
    preferred_terms: int
    replaced_terms: int
    recoded_uncoded: int
    still_uncoded: int
    recoded_coded: int
    would_recode_coded: int


def load_sponsor_dictionary(actor, path: Path, *, recode_coded: bool = False) -> LoadResult:
    """Validate and load the file (refused whole with line-numbered problems), then re-code.

    Raises ``DictionaryFileInvalid`` before anything is written. The caller commits.
    """
    data = path.read_bytes()
    entries = parse_dictionary(decode_dictionary_file(data))
    sha256 = file_sha256(data)
    loaded = replace_sponsor_dictionary(entries, filename=path.name, sha256=sha256, now=utcnow())
    record_event(
        actor,
        "meddra_load",
        entity_type="meddra_dictionary",
        entity_id=sha256[:16],
        detail={
            "file": path.name,
            "sha256": sha256,
            "terms": loaded.terms,
            "preferred_terms": loaded.preferred_terms,
            "replaced_terms": loaded.replaced_terms,
            "recode_coded": recode_coded,
        },
    )
    reason = f"MedDRA dictionary loaded from {path.name} (sha256 {sha256[:16]})"
    counts = {"recoded_uncoded": 0, "still_uncoded": 0, "recoded_coded": 0, "would": 0}
    statement = (
        select(AdverseEvent, Participant)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .where(AdverseEvent.entered_in_error.is_(False))
        .order_by(AdverseEvent.id)
    )
    for record, participant in db.session.execute(statement).all():
        coding = code_term(record.term)
        if record.coding_source == "uncoded":
            if coding.source == "uncoded":
                counts["still_uncoded"] += 1
            else:
                apply_correction(actor, record, participant, coding.as_values(), reason)
                counts["recoded_uncoded"] += 1
            continue
        if coding.source == "uncoded":
            continue  # never un-code: a term coded before keeps its coding
        current = (record.preferred_term, record.system_organ_class, record.coding_source)
        if current == (coding.preferred_term, coding.system_organ_class, coding.source):
            continue
        if recode_coded:
            apply_correction(actor, record, participant, coding.as_values(), reason)
            counts["recoded_coded"] += 1
        elif current[:2] != (coding.preferred_term, coding.system_organ_class):
            counts["would"] += 1
    return LoadResult(
        source=loaded.source,
        terms=loaded.terms,
        preferred_terms=loaded.preferred_terms,
        replaced_terms=loaded.replaced_terms,
        recoded_uncoded=counts["recoded_uncoded"],
        still_uncoded=counts["still_uncoded"],
        recoded_coded=counts["recoded_coded"],
        would_recode_coded=counts["would"],
    )
