"""The audit-trail browser: filter, read newest first, download what the filter shows.

The filters are the API's (``AuditQuerySchema``, loaded as ``GET /api/v1/audit`` loads them)
and the rows are read by the same ``trial.audit.reading`` functions, so the page shows a
reader exactly the rows, and the columns, the API gives them: site staff and monitors their
sites' rows only, and no arm to anyone (none is ever written to the trail; the blinding
matrix of tests/test_blinding.py reads these pages as it reads the API). Its roles are
the API operation's. A date typed without a time is a whole day in UTC: ``from`` its start,
``to`` its end.

The download (``/audit-trail.csv``) is every row the filter matches, newest first, the page's
values one column each (as the API names them) plus each row's hash, written with the ``csv``
module; a cell a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return)
is prefixed with an apostrophe. Each download is itself recorded in the trail (an export).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
from datetime import date, timedelta

from flask import g, render_template, request, send_file, url_for
from werkzeug.datastructures import MultiDict

from trial.audit.reading import audit_page, audit_rows, recorded_actions
from trial.audit.schemas import AuditQuerySchema
from trial.audit.services import record_event
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import reading, utcnow, writes_on_read
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, load_form

bp = PageBlueprint("audit_pages", __name__)

# GET /api/v1/audit's roles (tests/test_pages_admin.py compares them).
READERS = (Role.ADMIN, Role.DATA_MANAGER, Role.MONITOR, Role.COORDINATOR, Role.INVESTIGATOR)
PAGE_SIZE = 50
FILTERS = ("participant", "username", "action", "from", "to")
LABELS = {
    "participant": "Participant",
    "username": "User",
    "action": "Action",
    "from": "From",
    "to": "To",
}
# (heading, key) of each value a row shows, on the page and in the CSV alike.
COLUMNS = [
    ("Seq", "seq"),
    ("When (UTC)", "occurred_at"),
    ("User", "username"),
    ("Role", "role"),
    ("User's sites", "user_site"),
    ("Action", "action"),
    ("Record type", "entity_type"),
    ("Record", "entity_id"),
    ("Record's site", "entity_site"),
    ("Field", "field"),
    ("Old value", "old_value"),
    ("New value", "new_value"),
    ("Reason", "reason"),
    ("Detail", "detail"),
]
CSV_COLUMNS = [*COLUMNS, ("Hash", "hash")]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _instant(text: str, end: bool) -> str:
    """A typed ``from``/``to`` as the API takes it: a bare date is that day's start in UTC
    (``to``: the next day's start, so the day itself is included); anything else is passed
    as typed, for the schema to accept or refuse."""
    if _DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return text
        if end:
            if day == date.max:
                return text
            day += timedelta(days=1)
        return f"{day.isoformat()}T00:00:00Z"
    return text


def _query(args: MultiDict) -> tuple[dict, dict]:
    """The filters typed (as shown back in the form) and the API's loaded query, newest
    first; raises ``ValidationFailed`` naming every bad filter."""
    typed = {name: (args.get(name) or "").strip() for name in FILTERS}
    body = {name: value for name, value in typed.items() if value}
    for name in ("from", "to"):
        if name in body:
            body[name] = _instant(body[name], end=name == "to")
    if args.get("cursor"):
        body["cursor"] = args["cursor"]
    body["order"] = "newest"
    return typed, load_form(AuditQuerySchema(), body)


def _text(value) -> str:
    """A column's value as shown: text as it is, other JSON values as JSON, nothing blank."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# How AuditEventSchema dumps each column (text as it is; the JSON-encoded columns as the
# values they encode; the instant in ISO 8601), done without the schema's per-field
# machinery, which was two thirds of a large download's time. tests/test_pages_admin.py
# checks it against AuditEventSchema's dump of every row of a trail.
_JSON_COLUMNS = frozenset({"old_value", "new_value", "detail"})


def _cell(event, key: str) -> str:
    value = getattr(event, key)
    if value is None:
        return ""
    if key in _JSON_COLUMNS:
        return _text(json.loads(value))
    if key == "occurred_at":
        return value.isoformat()
    return str(value)


def shown_rows(rows, columns=COLUMNS) -> list[dict[str, str]]:
    """The rows as the API dumps them, each column as text (the page's cells, the CSV's)."""
    return [{key: _cell(event, key) for _, key in columns} for event in rows]


def neutralised(cell: str) -> str:
    """A cell a spreadsheet will not run: one starting with a formula character is prefixed
    with an apostrophe (OWASP's CSV injection advice)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


@bp.route("/audit-trail", methods=["GET"])
@allow(*READERS)
def audit_trail():
    """The rows you may read that match the filters, newest first, 50 to a page."""
    typed = {name: (request.args.get(name) or "").strip() for name in FILTERS}
    errors: dict[str, list[str]] = {}
    rows, next_cursor, status = [], None, 200
    try:
        typed, args = _query(request.args)
        page, next_cursor = audit_page(g.current_user, {**args, "limit": PAGE_SIZE})
        rows = shown_rows(page)
    except ValidationFailed as refused:
        errors, status = form_errors(refused, LABELS), refused.status
    filters = {name: value for name, value in typed.items() if value}
    return render_template(
        "audit/trail.html",
        title="Audit trail",
        form=MultiDict(typed),
        errors=errors,
        labels=LABELS,
        rows=rows,
        actions=recorded_actions(g.current_user),
        filtered=bool(filters),
        continued=bool(request.args.get("cursor")),
        older_url=url_for("audit_pages.audit_trail", **filters, cursor=next_cursor)
        if next_cursor
        else None,
        newest_url=url_for("audit_pages.audit_trail", **filters),
        csv_url=url_for("audit_pages.audit_trail_csv", **filters),
        page_size=PAGE_SIZE,
    ), status


@bp.route("/audit-trail.csv", methods=["GET"])
@allow(*READERS)
@writes_on_read
def audit_trail_csv():
    """Download every row the filters match (all pages), newest first, as CSV; recorded."""
    typed, args = _query(request.args)  # a refusal is the 422 page, nothing recorded
    args.pop("cursor", None)  # the download is the whole filter, not the page shown
    db.session.commit()  # the filter's check read; the long read below must not block writers
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    with reading():
        digest, count = _write_csv(audit_rows(g.current_user, args), spool)
        db.session.commit()  # ends the read: nothing was written
    filters = {name: value for name, value in typed.items() if value}
    record_event(
        g.current_user,
        "audit_trail_downloaded",
        entity_type="export",
        entity_id="audit-trail",
        detail={"filters": filters, "rows": count, "sha256": digest.hexdigest()},
    )
    db.session.commit()
    spool.seek(0)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response = send_file(
        spool, mimetype="text/csv", as_attachment=True, download_name=f"audit-trail-{stamp}.csv"
    )
    response.headers["X-Content-SHA256"] = digest.hexdigest()
    return response


def _write_csv(events, out) -> tuple:
    """Write the header and ``events`` as CSV to ``out`` (bytes, UTF-8) in batches; return
    the SHA-256 of what was written and how many rows."""
    digest, count, batch = hashlib.sha256(), 0, []
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([heading for heading, _ in CSV_COLUMNS])

    def flush():
        data = text.getvalue().encode("utf-8")
        text.seek(0)
        text.truncate()
        digest.update(data)
        out.write(data)

    for event in events:
        batch.append(event)
        if len(batch) == 1000:
            count += _write(writer, batch)
            flush()
            batch = []
    count += _write(writer, batch)
    flush()
    return digest, count


def _write(writer, events) -> int:
    for row in shown_rows(events, CSV_COLUMNS):
        writer.writerow([neutralised(row[key]) for _, key in CSV_COLUMNS])
    return len(events)
