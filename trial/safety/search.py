"""Find preferred terms for coding: prefix and synonym search over the loaded dictionaries.

The dictionaries are the ones automatic coding uses, in its order: a term of the sponsor's
licensed dictionary hides the same term of the built-in one. A term matches when it, or one
of its words, starts with the query (case and spacing ignored). Results are preferred terms,
one row each, best match first: the PT itself starting with the query, then a synonym
(lowest level term) starting with it, then the same for a later word; ties by PT name.
"""

from __future__ import annotations

from sqlalchemy import case, or_, select

from trial.extensions import db
from trial.safety.meddra import builtin_dictionary, normalise_term
from trial.safety.models import MeddraTerm

# Sponsor rows read per search at most: a one-letter query must not pull a whole MedDRA
# (some 80,000 lowest level terms) into memory to show a page of results.
SPONSOR_ROWS = 1000


def _rank(term: str, pt_key: str, query: str) -> int | None:
    """0-3 (see the module's order) or None when ``term`` does not match."""
    if term.startswith(query):
        position = 0
    elif f" {query}" in term:  # a later word starts with it
        position = 1
    else:
        return None
    return position * 2 + (term != pt_key)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sponsor_rows(query: str):
    escaped = _like_escaped(query)
    prefix = MeddraTerm.term.like(f"{escaped}%", escape="\\")
    word = MeddraTerm.term.like(f"% {escaped}%", escape="\\")
    statement = (
        select(MeddraTerm.term, MeddraTerm.preferred_term, MeddraTerm.soc)
        .where(or_(prefix, word))
        .order_by(case((prefix, 0), else_=1), MeddraTerm.term)
        .limit(SPONSOR_ROWS)
    )
    return db.session.execute(statement).all()


def search_terms(query: str, limit: int) -> list[dict]:
    """Preferred terms matching ``query``, at most ``limit``, best first."""
    query = normalise_term(query)
    candidates = [
        (row.term, row.preferred_term, row.soc, "sponsor") for row in _sponsor_rows(query)
    ]
    builtin = [
        (e.key, e.preferred_term, e.soc, "builtin")
        for e in builtin_dictionary().values()
        if _rank(e.key, normalise_term(e.preferred_term), query) is not None
    ]
    if builtin:
        keys = [term for term, *_ in builtin]
        shadowed = set(db.session.scalars(select(MeddraTerm.term).where(MeddraTerm.term.in_(keys))))
        candidates += [c for c in builtin if c[0] not in shadowed]
    best: dict[str, tuple] = {}
    for term, pt, soc, source in candidates:
        pt_key = normalise_term(pt)
        rank = _rank(term, pt_key, query)
        if rank is None:
            continue
        # The sponsor's spelling of a PT wins over the built-in one at equal rank.
        entry = (rank, source != "sponsor", term, pt, soc, source)
        if pt_key not in best or entry < best[pt_key]:
            best[pt_key] = entry
    ordered = sorted(best.values(), key=lambda e: (e[0], normalise_term(e[3]), e[1]))
    return [
        {
            "preferred_term": pt,
            "system_organ_class": soc,
            "matched_term": None if term == normalise_term(pt) else term,
            "source": source,
        }
        for _rank_, _not_sponsor, term, pt, soc, source in ordered[:limit]
    ]
