"""The text of each notification: a subject and a plain-text body, from what the event is.

Blinding: no function here takes an arm, a kit number or anything read from the
randomization list, so no message can carry one, nor differ in length by arm (the tests show
a code-break's message is the same bytes whichever the arm). Account messages never carry a
password: they say how to get one.
"""

from __future__ import annotations

from datetime import date, datetime

SIGN_OFF = (
    "\n\n--\nSent by the trial data service. This message carries no treatment "
    "arm and no password.\n"
)


def _when(instant: datetime | None) -> str:
    return "-" if instant is None else f"{instant:%Y-%m-%d %H:%M} UTC"


def _day(value: date | None) -> str:
    return "-" if value is None else value.isoformat()


def _lines(*pairs: tuple[str, object]) -> str:
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in pairs)


def _body(intro: str, facts: str, outro: str = "") -> str:
    return intro + "\n\n" + facts + ("\n\n" + outro if outro else "") + SIGN_OFF


def code_break(*, participant_id, site, by, by_role, at, reason) -> tuple[str, str]:
    """An emergency code-break: who, when, which participant, why. Never the arm."""
    subject = f"Emergency code-break: participant {participant_id} ({site})"
    body = _body(
        "The treatment code of a participant was broken in an emergency.",
        _lines(
            ("Participant", participant_id),
            ("Site", site),
            ("Broken by", f"{by} ({by_role})"),
            ("When", _when(at)),
            ("Reason", reason),
        ),
        "The investigator who broke it was shown the treatment; this message does not say "
        "it. The event is in the audit trail and in the unblinded statistician's notices.",
    )
    return subject, body


def serious_adverse_event(*, record, participant, reported_by, due_at) -> tuple[str, str]:
    """A new serious adverse event, with its expedited report's deadline."""
    subject = (
        f"Serious adverse event: participant {participant.participant_id} ({participant.site_code})"
    )
    coded = (
        f"{record.preferred_term} ({record.system_organ_class})"
        if record.preferred_term
        else "not coded yet"
    )
    body = _body(
        "A serious adverse event was reported. Its expedited report is due to the safety "
        "desk by the deadline below.",
        _lines(
            ("Participant", participant.participant_id),
            ("Site", participant.site_code),
            ("Adverse event", record.id),
            ("Term (verbatim)", record.term),
            ("Preferred term", coded),
            ("Onset date", _day(record.onset_date)),
            ("Site aware on", _day(record.awareness_date)),
            ("Grade", record.grade),
            ("Seriousness", ", ".join(record.seriousness_criteria) or "-"),
            ("Relatedness", record.relatedness),
            ("Outcome", record.outcome),
            ("Reported by", reported_by),
            ("Report due", _when(due_at)),
        ),
    )
    return subject, body


def expedited_report_overdue(*, report, record, participant, now) -> tuple[str, str]:
    """An expedited report still open at its deadline."""
    subject = (
        f"Expedited report overdue: participant {participant.participant_id} "
        f"({participant.site_code})"
    )
    body = _body(
        "The expedited report of a serious adverse event is overdue: the site has not "
        "submitted it by its deadline.",
        _lines(
            ("Participant", participant.participant_id),
            ("Site", participant.site_code),
            ("Expedited report", report.id),
            ("Adverse event", record.id),
            ("Term (verbatim)", record.term),
            ("Site aware on", _day(record.awareness_date)),
            ("Was due", _when(report.due_at)),
            ("Still open at", _when(now)),
        ),
        "The site submits the report from the participant's adverse events (Submit "
        "expedited report); the safety desk acknowledges it.",
    )
    return subject, body


def stratum_low(*, stratum, remaining, total) -> tuple[str, str]:
    subject = f"Randomization stratum {stratum} is running low"
    body = _body(
        "A randomization stratum is running low on slots.",
        _lines(("Stratum", stratum), ("Slots left", f"{remaining} of {total}")),
        "Extend the list before it runs out: a participant of a stratum with no slot left "
        "cannot be randomized.",
    )
    return subject, body


def stratum_exhausted(*, stratum, participant_id) -> tuple[str, str]:
    subject = f"Randomization stratum {stratum} has no slot left"
    body = _body(
        "A participant could not be randomized: their stratum has no slot left.",
        _lines(("Stratum", stratum), ("Participant not randomized", participant_id)),
        "Extend the list; the site can then randomize the participant again.",
    )
    return subject, body


def _query_facts(query) -> list[tuple[str, object]]:
    return [
        ("Query", query.id),
        ("Participant", query.participant_code),
        ("Site", query.site_code),
        ("Record", f"{query.entity} {query.record_id}"),
        ("Field", query.field or "(the whole record)"),
    ]


def query_raised(*, query, by) -> tuple[str, str]:
    subject = f"Data query {query.id} on participant {query.participant_code} ({query.site_code})"
    body = _body(
        "A data query was raised on a record of your site. Answer it from the Queries page.",
        _lines(
            *_query_facts(query),
            ("Raised by", f"{by.username} ({by.role})"),
            ("When", _when(query.opened_at)),
            ("Question", query.text),
        ),
    )
    return subject, body


def query_answered(*, query, by, text, at) -> tuple[str, str]:
    subject = f"Data query {query.id} answered ({query.site_code})"
    body = _body(
        "A data query you raised was answered. Close it from the Queries page, or re-open it "
        "if more is needed.",
        _lines(
            *_query_facts(query),
            ("Answered by", f"{by.username} ({by.role})"),
            ("When", _when(at)),
            ("Answer", text or "-"),
        ),
    )
    return subject, body


def _account_facts(user) -> str:
    return _lines(
        ("Username", user.username),
        ("Role", user.role),
        ("Sites", user.site_label or "(trial-wide)"),
    )


def account_created(*, user, password_set: bool) -> tuple[str, str]:
    """How to sign in, never the password."""
    how = (
        "Your administrator will give you your first password in person or by telephone, "
        "never by e-mail. Sign in on the service's sign-in page with your username and that "
        "password, then set a password of your own (Change password) that nobody else knows."
        if password_set
        else "The account has no password yet. Ask your administrator to reset it: they "
        "will give you a temporary password in person or by telephone, never by e-mail. "
        "Sign in with it on the service's sign-in page and set your own at once."
    )
    return "Your account on the trial data service", _body(
        "An account was created for you on the trial data service.",
        _account_facts(user),
        how,
    )


def password_reset(*, user, expires_at) -> tuple[str, str]:
    """A reset: the temporary password comes from the administrator, never by e-mail."""
    return "The password of your trial account was reset", _body(
        "An administrator reset the password of your account on the trial data service.",
        _lines(
            ("Username", user.username),
            ("Temporary password expires", _when(expires_at)),
        ),
        "The administrator will give you a temporary password in person or by telephone, "
        "never by e-mail. Sign in with it and set a password of your own: until you do, the "
        "account can do nothing else. If you did not expect this, tell the trial's "
        "administrator.",
    )
