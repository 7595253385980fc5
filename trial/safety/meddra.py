"""Code verbatim AE terms to a MedDRA preferred term and its primary system organ class.

MedDRA is licensed, so two dictionaries are consulted, in this order:

1. the sponsor's licensed dictionary, loaded into the ``meddra_terms`` table by
   ``flask meddra load FILE`` (it replaces the previous load whole);
2. the built-in ``meddra_terms.csv`` shipped with this package: common preferred terms in
   standard MedDRA spelling with their primary SOC, plus everyday verbatims (lowest-level-term
   style synonyms such as "drowsiness") pointing at them. It lives in the package, not in a
   migration, so a correction to it is a reviewed code change that needs no data migration.

Both files have the same shape (``term`` or ``llt``, ``pt``, ``soc``) and go through the same
validation. Lookup is insensitive to case and to runs of whitespace; a term found in neither
dictionary stays uncoded (never dropped) and is listed for coding.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sqlalchemy import delete, func, select

from trial.extensions import db
from trial.safety.models import SOC_MAX, TERM_MAX, MeddraTerm

BUILTIN_FILE = "meddra_terms.csv"

# The 27 system organ classes of MedDRA (since version 19.0), in the international order.
SYSTEM_ORGAN_CLASSES = (
    "Infections and infestations",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)",
    "Blood and lymphatic system disorders",
    "Immune system disorders",
    "Endocrine disorders",
    "Metabolism and nutrition disorders",
    "Psychiatric disorders",
    "Nervous system disorders",
    "Eye disorders",
    "Ear and labyrinth disorders",
    "Cardiac disorders",
    "Vascular disorders",
    "Respiratory, thoracic and mediastinal disorders",
    "Gastrointestinal disorders",
    "Hepatobiliary disorders",
    "Skin and subcutaneous tissue disorders",
    "Musculoskeletal and connective tissue disorders",
    "Renal and urinary disorders",
    "Pregnancy, puerperium and perinatal conditions",
    "Reproductive system and breast disorders",
    "Congenital, familial and genetic disorders",
    "General disorders and administration site conditions",
    "Investigations",
    "Injury, poisoning and procedural complications",
    "Surgical and medical procedures",
    "Social circumstances",
    "Product issues",
)
_SOC_BY_KEY = {" ".join(s.split()).casefold(): s for s in SYSTEM_ORGAN_CLASSES}


def normalise_term(term: str) -> str:
    """The lookup key of a term: case-folded, with whitespace runs collapsed to one space."""
    return " ".join(term.split()).casefold()


@dataclass(frozen=True)
class Coding:
    preferred_term: str | None
    system_organ_class: str | None
    source: str  # builtin, sponsor or uncoded

    def as_values(self) -> dict:
        return {
            "preferred_term": self.preferred_term,
            "system_organ_class": self.system_organ_class,
            "coding_source": self.source,
        }


UNCODED = Coding(None, None, "uncoded")


@dataclass(frozen=True)
class DictionaryEntry:
    key: str
    preferred_term: str
    soc: str
    line: int


class DictionaryFileInvalid(Exception):
    """A dictionary file refused whole; ``problems`` name each bad line."""

    def __init__(self, problems: list[str]):
        super().__init__(f"{len(problems)} problem(s) in the dictionary file")
        self.problems = problems


def parse_dictionary(text: str, *, max_problems: int = 50) -> dict[str, DictionaryEntry]:
    """Validate a dictionary CSV and return its entries by lookup key, or refuse it whole.

    Columns (header, any case): ``llt`` or ``term``, then ``pt`` and ``soc``; other columns
    (codes, say) are ignored. Every row needs all three values; the SOC must be one of the 27
    MedDRA SOCs; a term may map to one PT only and a PT to one primary SOC. Each preferred
    term also codes to itself, as in MedDRA where every PT is its own lowest level term.
    """
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DictionaryFileInvalid(["line 1: the file is empty (expected a header)"]) from None
    except csv.Error as exc:
        raise DictionaryFileInvalid([f"line 1: not readable as CSV ({exc})"]) from None
    names = [name.strip().casefold() for name in header]
    term_columns = [n for n in ("llt", "term") if n in names]
    missing = [n for n in ("pt", "soc") if n not in names]
    if len(term_columns) != 1 or missing:
        wanted = "one of 'llt' or 'term'" if len(term_columns) != 1 else ""
        wanted = ", ".join(filter(None, [wanted, *(f"'{m}'" for m in missing)]))
        raise DictionaryFileInvalid(
            [
                f"line 1: the header must name the columns llt (or term), pt and soc; "
                f"missing or ambiguous: {wanted} (found {', '.join(header) or 'nothing'})"
            ]
        )
    if len(set(names)) != len(names):
        raise DictionaryFileInvalid(["line 1: a column name appears twice in the header"])
    at = {name: names.index(name) for name in (term_columns[0], "pt", "soc")}

    entries: dict[str, DictionaryEntry] = {}
    soc_of_pt: dict[str, tuple[str, int]] = {}
    line = 1
    try:
        for row in reader:
            line = reader.line_num
            if len(problems) >= max_problems:
                break
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                problems.append(
                    f"line {line}: expected {len(header)} fields like the header, found {len(row)}"
                )
                continue
            term, pt, soc = (" ".join(row[at[k]].split()) for k in (term_columns[0], "pt", "soc"))
            bad = False
            for label, value, limit in (
                ("term", term, TERM_MAX),
                ("pt", pt, TERM_MAX),
                ("soc", soc, SOC_MAX),
            ):
                if not value:
                    problems.append(f"line {line}: {label} is empty")
                    bad = True
                elif "\x00" in value:  # PostgreSQL cannot store it
                    problems.append(f"line {line}: {label} contains a NUL character")
                    bad = True
                # The lookup key is case-folded, which can lengthen it ("ß" folds to "ss").
                elif max(len(value), len(normalise_term(value))) > limit:
                    problems.append(f"line {line}: {label} is longer than {limit} characters")
                    bad = True
            canonical_soc = _SOC_BY_KEY.get(normalise_term(soc)) if soc else None
            if soc and canonical_soc is None:
                problems.append(f"line {line}: {soc!r} is not a MedDRA system organ class")
                bad = True
            if bad:
                continue
            pt_key = normalise_term(pt)
            if pt_key in soc_of_pt and soc_of_pt[pt_key][0] != canonical_soc:
                first_soc, first_line = soc_of_pt[pt_key]
                problems.append(
                    f"line {line}: PT {pt!r} is given SOC {canonical_soc!r} here but "
                    f"{first_soc!r} on line {first_line} (a PT has one primary SOC)"
                )
                continue
            soc_of_pt.setdefault(pt_key, (canonical_soc, line))
            key = normalise_term(term)
            earlier = entries.get(key)
            if earlier is not None:
                if normalise_term(earlier.preferred_term) != pt_key:
                    problems.append(
                        f"line {line}: term {term!r} maps to {pt!r} here but to "
                        f"{earlier.preferred_term!r} on line {earlier.line}"
                    )
                continue
            entries[key] = DictionaryEntry(key, pt, canonical_soc, line)
    except csv.Error as exc:
        problems.append(f"line {reader.line_num or line}: not readable as CSV ({exc})")
    if not problems and not entries:
        problems.append("the file has a header but no terms")
    if problems:
        if len(problems) >= max_problems:
            problems.append(f"(stopped after {max_problems} problems)")
        raise DictionaryFileInvalid(problems)
    # Every PT codes to itself, unless the file says otherwise for that exact text.
    for entry in list(entries.values()):
        pt_key = normalise_term(entry.preferred_term)
        entries.setdefault(
            pt_key, DictionaryEntry(pt_key, entry.preferred_term, entry.soc, entry.line)
        )
    return entries


def decode_dictionary_file(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DictionaryFileInvalid(
            [f"line {line}: not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8"]
        ) from None


@cache
def builtin_dictionary() -> dict[str, DictionaryEntry]:
    """The dictionary shipped with the package, parsed and validated once per process."""
    data = resources.files("trial.safety").joinpath(BUILTIN_FILE).read_bytes()
    return parse_dictionary(decode_dictionary_file(data))


def code_term(term: str) -> Coding:
    """Code a verbatim term: the sponsor's dictionary first, then the built-in one."""
    key = normalise_term(term)
    if not key:
        return UNCODED
    row = db.session.execute(
        select(MeddraTerm.preferred_term, MeddraTerm.soc).where(MeddraTerm.term == key)
    ).first()
    if row is not None:
        return Coding(row.preferred_term, row.soc, "sponsor")
    entry = builtin_dictionary().get(key)
    if entry is not None:
        return Coding(entry.preferred_term, entry.soc, "builtin")
    return UNCODED


@dataclass(frozen=True)
class LoadedDictionary:
    source: str
    sha256: str
    terms: int
    preferred_terms: int
    replaced_terms: int


def replace_sponsor_dictionary(
    entries: dict[str, DictionaryEntry], *, filename: str, sha256: str, now
) -> LoadedDictionary:
    """Replace the sponsor dictionary table by ``entries`` (caller audits and commits)."""
    previous = db.session.scalar(select(func.count()).select_from(MeddraTerm)) or 0
    db.session.execute(delete(MeddraTerm))
    source = f"{filename} sha256:{sha256}"
    db.session.add_all(
        MeddraTerm(
            term=e.key, preferred_term=e.preferred_term, soc=e.soc, source=source, loaded_at=now
        )
        for e in entries.values()
    )
    db.session.flush()
    return LoadedDictionary(
        source=source,
        sha256=sha256,
        terms=len(entries),
        preferred_terms=len({normalise_term(e.preferred_term) for e in entries.values()}),
        replaced_terms=previous,
    )


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
