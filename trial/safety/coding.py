"""Load a sponsor's licensed MedDRA dictionary and bring existing AEs up to it, audited.

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
from trial.extensions import db
from trial.participants.models import Participant
from trial.safety.meddra import (
    code_term,
    decode_dictionary_file,
    file_sha256,
    parse_dictionary,
    replace_sponsor_dictionary,
)
from trial.safety.models import AdverseEvent
from trial.safety.services import apply_correction


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
