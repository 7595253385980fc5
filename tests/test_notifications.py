"""E-mail notifications (issue 25): each event's message, recipients and text, delivered by
``flask notifications send`` to a real SMTP server on loopback (aiosmtpd).

Blinding: no message, recipient list or outbox column may carry an arm or a kit-to-arm
link; a code-break's message is the same length whichever the arm (with controls showing
the checks would catch an arm). Accounts' messages never carry a password. The sender's
guarantees (at least once, a stable Message-ID, failures kept for retry) are in
test_notifications_sender.py.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from randomization import lists
from tests.conftest import bearer, make_ready_for_randomization
from tests.notification_helpers import SmtpServer, outbox, the_one
from trial.audit.models import AuditEvent
from trial.auth import approval
from trial.auth import services as auth_services
from trial.auth.models import User
from trial.auth.passwords import set_password
from trial.cli_support import system_actor
from trial.demo import demo_email
from trial.extensions import db
from trial.notifications.events import check_overdue_reports

ARMS = ("baclofen", "placebo")
DESK = ("desk@sponsor.example", "pv@sponsor.example")
INVESTIGATOR_PASSWORD = "only the investigator knows"
REASON = "suspected overdose, unconscious on arrival"


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def config_overrides(smtp):
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp.port,
        "SMTP_TIMEOUT_SECONDS": 5,
        "MAIL_FROM": "trial@trial.example",
        "SAFETY_DESK_EMAILS": ", ".join(DESK),
    }


def address(username: str) -> str:
    return f"{username}@people.example"


class People:
    """Two sites and an account of every role, each with an address (name@people.example);
    the S01 investigator approved to break codes."""

    def __init__(self, client, make_site, make_user):
        self.client = client
        make_site("S01", planned_enrollment=10)
        make_site("S02", planned_enrollment=10)
        self.tokens, self.users = {}, {}
        for name, role, sites, password in (
            ("ustat", "unblinded_statistician", [], "the statistician's own one"),
            ("dsmb1", "dsmb", [], None),
            ("dsmb2", "dsmb", [], None),
            ("inv1", "investigator", ["S01"], INVESTIGATOR_PASSWORD),
            ("inv2", "investigator", ["S02"], None),
            ("coord1", "coordinator", ["S01"], None),
            ("coord2", "coordinator", ["S02"], None),
            ("monitor", "monitor", ["S01", "S02"], None),
            ("dm", "data_manager", [], None),
            ("stat", "statistician", [], None),
            ("admin", "admin", [], None),
        ):
            user, token = make_user(role, sites=sites, username=name, password=password)
            user.email = address(name)
            self.users[name], self.tokens[name] = user, token
        db.session.commit()
        inv1 = self.users["inv1"]
        set_password(inv1, inv1, INVESTIGATOR_PASSWORD)  # the owner's own
        approval.approve_code_break(self.users["ustat"], inv1, reason="identity confirmed")
        db.session.commit()
        self.listed = False

    def api(self, who, method, url, body=None):
        return getattr(self.client, method)(
            f"/api/v1{url}", headers=bearer(self.tokens[who]), json=body
        )

    def register(self, site="S01", sex="F") -> str:
        coordinator = "coord1" if site == "S01" else "coord2"
        consent = (date.today() - timedelta(days=40)).isoformat()
        response = self.api(
            coordinator,
            "post",
            "/participants",
            {"site": site, "sex": sex, "year_of_birth": 1980, "consent_date": consent},
        )
        assert response.status_code == 201, response.json
        return response.json["participant_id"]

    def randomize(self, pid, site="S01") -> dict:
        if not self.listed:
            lists.generate(self.users["ustat"])
            db.session.commit()
            self.listed = True
        coordinator = "coord1" if site == "S01" else "coord2"
        make_ready_for_randomization(self.client, bearer(self.tokens[coordinator]), pid)
        response = self.api(
            coordinator, "post", f"/participants/{pid}/randomize", {"eligibility_confirmed": True}
        )
        assert response.status_code == 201, response.json
        return response.json


@pytest.fixture
def people(client, make_site, make_user):
    return People(client, make_site, make_user)


def send(runner, *args):
    return runner.invoke(args=["notifications", "send", *args])


def arms_in(text: str) -> set[str]:
    return {arm for arm in ARMS if arm in text.lower()}


def everything_of(row) -> str:
    """Every column of an outbox row as text: what an admin's ``notifications list`` shows."""
    return " ".join(str(getattr(row, column.name)) for column in row.__table__.columns)


# --- accounts' addresses --------------------------------------------------------------------


def test_an_account_takes_an_email_through_the_api_the_command_line_and_a_patch(
    client, runner, make_user, make_site
):
    make_site("S01")
    _, admin = make_user("admin", username="root")
    created = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "mona", "role": "monitor", "sites": ["S01"], "email": "mona@x.example"},
    )
    assert created.status_code == 201 and created.json["email"] == "mona@x.example"
    bad = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "nemo", "role": "monitor", "sites": ["S01"], "email": "not an address"},
    )
    assert bad.status_code == 422 and list(bad.json["errors"]) == ["email"]
    assert auth_services.get_user_by_username("nemo") is None

    result = runner.invoke(
        args=["users", "create", "dee", "--role", "dsmb", "--email", "dee@x.example"]
    )
    assert result.exit_code == 0, result.output
    assert auth_services.get_user_by_username("dee").email == "dee@x.example"
    refused = runner.invoke(args=["users", "create", "dum", "--role", "dsmb", "--email", "x@"])
    assert refused.exit_code != 0 and auth_services.get_user_by_username("dum") is None

    changed = client.patch(
        "/api/v1/users/mona",
        headers=bearer(admin),
        json={"email": "mona@y.example", "reason": "new mailbox"},
    )
    assert changed.status_code == 200 and changed.json["email"] == "mona@y.example"
    assert changed.json["role"] == "monitor" and changed.json["sites"] == ["S01"]
    by_cli = runner.invoke(
        args=["users", "set-email", "dee", "--email", "", "--reason", "left the board"]
    )
    assert by_cli.exit_code == 0, by_cli.output
    assert auth_services.get_user_by_username("dee").email is None
    nothing = client.patch("/api/v1/users/mona", headers=bearer(admin), json={"reason": "x y"})
    assert nothing.status_code == 422
    listed = client.get("/api/v1/users", headers=bearer(admin)).json
    assert {u["username"]: u["email"] for u in listed}["mona"] == "mona@y.example"

    trail = db.session.scalars(
        select(AuditEvent).where(AuditEvent.entity_id == "mona", AuditEvent.field == "email")
    ).all()
    assert [(e.action, e.reason) for e in trail] == [
        ("create", None),
        ("email_changed", "new mailbox"),
    ]
    assert demo_email("dsmb") == "dsmb@trial.example"


# --- emergency code-break ---------------------------------------------------------------------


def test_a_code_break_tells_the_unblinded_statistician_the_dsmb_and_the_sites_investigators_never_the_arm(  # noqa: E501
    app, runner, people, smtp
):
    allocations, by_arm = {}, {}
    for _ in range(6):  # six in one stratum: its first block (2, 4 or 6) holds both arms
        pid = people.register()
        allocations[pid] = people.randomize(pid)
        broken = people.api(
            "inv1",
            "post",
            f"/participants/{pid}/code-break",
            {"reason": REASON, "password": INVESTIGATOR_PASSWORD},
        )
        assert broken.status_code == 200, broken.json
        by_arm.setdefault(broken.json["arm"], []).append(pid)
    assert set(by_arm) == set(ARMS)

    rows = outbox("code_break")
    assert len(rows) == 6
    expected = sorted(address(n) for n in ("ustat", "dsmb1", "dsmb2", "inv1"))
    for row in rows:
        assert row.recipient_list == expected  # not inv2 (S02), no blinded central role
        assert arms_in(everything_of(row)) == set()
        for allocation in allocations.values():
            assert allocation["kit_number"] not in everything_of(row)
    first = {arm: next(r for r in rows if pids[0] in r.body) for arm, pids in by_arm.items()}
    row = first["baclofen"]
    pid = by_arm["baclofen"][0]
    for fact in (pid, "S01", "inv1 (investigator)", REASON, f"{row.created_at:%Y-%m-%d}"):
        assert fact in row.body
    # The same length whichever the arm (participant ids and times are of fixed width).
    lengths = {arm: (len(r.subject.encode()), len(r.body.encode())) for arm, r in first.items()}
    assert lengths["baclofen"] == lengths["placebo"], lengths

    # Negative controls: a message that named the arm would be caught by both checks.
    leaky = {arm: r.body + f"\nArm: {arm}" for arm, r in first.items()}
    assert arms_in(leaky["placebo"]) == {"placebo"}
    assert len(leaky["baclofen"].encode()) != len(leaky["placebo"].encode())

    result = send(runner)
    assert result.exit_code == 0, result.output
    delivered = [m for m in smtp.received if "code-break" in str(m.message["Subject"])]
    assert len(delivered) == 6
    for message in delivered:
        # The outside contract: every DSMB account's address, after one pass.
        assert {address("dsmb1"), address("dsmb2")} <= set(message.rcpt_tos)
        assert arms_in(message.raw.decode()) == set()
        assert message.message["From"] == "trial@trial.example"
    assert {m.message_id for m in delivered} == {r.message_id for r in rows}
    # As delivered too (headers included): the same size whichever the arm.
    sizes = {
        arm: len(next(m for m in delivered if m.message_id == r.message_id).raw)
        for arm, r in first.items()
    }
    assert sizes["baclofen"] == sizes["placebo"], sizes
    assert all(r.sent_at is not None for r in outbox("code_break"))


def test_a_code_break_reaches_every_dsmb_account_with_an_address(app, runner, people, smtp):
    """Every active DSMB account with an address, however many: here a third one added."""
    auth_services.create_user(
        system_actor(), username="dsmb3", role="dsmb", email="third@dsmb.example"
    )
    db.session.commit()
    pid = people.register()
    people.randomize(pid)
    broken = people.api(
        "inv1",
        "post",
        f"/participants/{pid}/code-break",
        {"reason": REASON, "password": INVESTIGATOR_PASSWORD},
    )
    assert broken.status_code == 200
    assert send(runner).exit_code == 0
    dsmb = set(
        db.session.scalars(select(User.email).where(User.role == "dsmb", User.email.is_not(None)))
    )
    assert len(dsmb) == 3
    (message,) = [m for m in smtp.received if "code-break" in str(m.message["Subject"])]
    assert dsmb <= set(message.rcpt_tos)


# --- serious adverse events ---------------------------------------------------------------


def serious_ae(onset: date, awareness: date) -> dict:
    return {
        "term": "Hospitalised for somnolence",
        "onset_date": onset.isoformat(),
        "awareness_date": awareness.isoformat(),
        "grade": 3,
        "serious": True,
        "seriousness_criteria": ["hospitalisation"],
        "relatedness": "possible",
        "action_taken": "none",
        "outcome": "recovering",
    }


def test_a_new_serious_adverse_event_tells_the_safety_desk_the_statistician_and_the_dsmb(
    app, runner, people, smtp
):
    pid = people.register()
    allocation = people.randomize(pid)
    today = date.today()
    minor = dict(serious_ae(today, today), serious=False, seriousness_criteria=[], grade=1)
    minor.pop("awareness_date")
    assert (
        people.api("coord1", "post", f"/participants/{pid}/adverse-events", minor).status_code
        == 201
    )
    assert outbox("serious_adverse_event") == []  # not serious: nobody is told

    response = people.api(
        "coord1", "post", f"/participants/{pid}/adverse-events", serious_ae(today, today)
    )
    assert response.status_code == 201, response.json
    row = the_one("serious_adverse_event")
    assert row.recipient_list == sorted(
        [*DESK, address("ustat"), address("dsmb1"), address("dsmb2")]
    )
    for fact in (pid, "S01", "Hospitalised for somnolence", "hospitalisation", "coord1"):
        assert fact in row.body
    assert arms_in(everything_of(row)) == set()
    assert allocation["kit_number"] not in everything_of(row)

    # A correction that keeps it serious is not a new serious event.
    ae_id = response.json["id"]
    patched = people.api(
        "coord1", "patch", f"/adverse-events/{ae_id}", {"grade": 4, "reason": "source says 4"}
    )
    assert patched.status_code == 200, patched.json
    assert len(outbox("serious_adverse_event")) == 1

    assert send(runner).exit_code == 0
    (message,) = smtp.received
    assert sorted(message.rcpt_tos) == row.recipient_list
    assert message.message_id == row.message_id and "somnolence" in message.body

    # Downgraded (its report withdrawn: nobody told), then serious again: told again.
    down = {"serious": False, "seriousness_criteria": [], "reason": "not hospitalised"}
    assert people.api("coord1", "patch", f"/adverse-events/{ae_id}", down).status_code == 200
    assert len(outbox("serious_adverse_event")) == 1
    up = {"serious": True, "seriousness_criteria": ["hospitalisation"], "reason": "he was"}
    assert people.api("coord1", "patch", f"/adverse-events/{ae_id}", up).status_code == 200
    assert len(outbox("serious_adverse_event")) == 2


def test_an_overdue_expedited_report_is_told_once_to_the_desk_the_statistician_the_dsmb_and_the_sites_investigators(  # noqa: E501
    app, runner, people, smtp
):
    pid = people.register()
    long_ago = date.today() - timedelta(days=10)
    response = people.api(
        "coord1", "post", f"/participants/{pid}/adverse-events", serious_ae(long_ago, long_ago)
    )
    assert response.status_code == 201, response.json
    assert outbox("expedited_report_overdue") == []  # found by the sender's pass
    assert send(runner).exit_code == 0
    row = the_one("expedited_report_overdue")
    assert row.recipient_list == sorted(
        [*DESK, address("ustat"), address("dsmb1"), address("dsmb2"), address("inv1")]
    )
    assert pid in row.body and "overdue" in row.subject.lower()
    assert row.sent_at is not None
    # Further passes (and a direct check) find it again but queue nothing more.
    assert send(runner).exit_code == 0
    assert check_overdue_reports() == 0
    db.session.commit()
    assert len(outbox("expedited_report_overdue")) == 1
    overdue = [m for m in smtp.received if "overdue" in str(m.message["Subject"]).lower()]
    assert len(overdue) == 1


def test_a_report_submitted_in_time_is_never_told_overdue(app, runner, people, smtp):
    pid = people.register()
    today = date.today()
    response = people.api(
        "coord1", "post", f"/participants/{pid}/adverse-events", serious_ae(today, today)
    )
    assert response.status_code == 201
    assert send(runner).exit_code == 0
    assert outbox("expedited_report_overdue") == []


# --- strata ------------------------------------------------------------------------------------


def test_a_stratum_running_low_and_exhausted_tells_the_unblinded_statistician_only(
    app, runner, people, smtp, make_site, make_user
):
    make_site("S03", planned_enrollment=1)  # a short list: a block or two
    _, token = make_user("coordinator", sites=["S03"], username="coord3")
    people.tokens["coord3"] = token
    lists.generate(people.users["ustat"])
    db.session.commit()
    people.listed = True
    consent = (date.today() - timedelta(days=40)).isoformat()
    for _ in range(40):
        created = people.api(
            "coord3",
            "post",
            "/participants",
            {"site": "S03", "sex": "M", "year_of_birth": 1975, "consent_date": consent},
        )
        pid = created.json["participant_id"]
        make_ready_for_randomization(people.client, bearer(token), pid)
        response = people.api(
            "coord3", "post", f"/participants/{pid}/randomize", {"eligibility_confirmed": True}
        )
        if response.status_code == 409:
            break
        assert response.status_code == 201, response.json
    else:
        pytest.fail("the stratum never ran out")
    low, exhausted = the_one("stratum_low"), the_one("stratum_exhausted")
    for row in (low, exhausted):
        assert row.recipient_list == [address("ustat")]
        assert "S03" in row.body and arms_in(everything_of(row)) == set()
    assert pid in exhausted.body
    assert send(runner).exit_code == 0
    stratum_mail = [m for m in smtp.received if "stratum" in str(m.message["Subject"]).lower()]
    assert len(stratum_mail) == 2
    assert all(m.rcpt_tos == [address("ustat")] for m in stratum_mail)


# --- data queries ------------------------------------------------------------------------------


def test_a_query_tells_the_sites_staff_and_its_answer_tells_who_raised_it(
    app, runner, people, smtp
):
    pid = people.register()
    raised = people.api(
        "monitor",
        "post",
        "/queries",
        {"entity": "participant", "record_id": pid, "field": "year_of_birth", "text": "1890?"},
    )
    assert raised.status_code == 201, raised.json
    row = the_one("query_raised")
    assert row.recipient_list == sorted([address("coord1"), address("inv1")])  # S01 staff only
    for fact in (pid, "year_of_birth", "1890?", "monitor"):
        assert fact in row.body
    qid = raised.json["query_id"]
    answered = people.api("coord1", "post", f"/queries/{qid}/answer", {"text": "1980, typo"})
    assert answered.status_code == 200, answered.json
    answer = the_one("query_answered")
    assert answer.recipient_list == [address("monitor")]
    assert "1980, typo" in answer.body and "coord1" in answer.body
    assert send(runner).exit_code == 0
    assert sorted(tuple(m.rcpt_tos) for m in smtp.received) == sorted(
        [tuple(row.recipient_list), tuple(answer.recipient_list)]
    )


# --- accounts --------------------------------------------------------------------------------


def test_an_account_created_or_reset_tells_its_owner_how_to_sign_in_never_the_password(
    client, runner, make_user, make_site, smtp
):
    make_site("S01")
    _, admin = make_user("admin", username="root")
    chosen = "the admin chose this one"
    created = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={
            "username": "cora",
            "role": "coordinator",
            "sites": ["S01"],
            "email": "cora@site.example",
            "password": chosen,
        },
    )
    assert created.status_code == 201
    row = the_one("account_created")
    assert row.recipient_list == ["cora@site.example"]
    assert "cora" in row.body and "sign-in page" in row.body and chosen not in row.body
    # Without an address nobody is told (and nothing is queued).
    client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "quiet", "role": "coordinator", "sites": ["S01"]},
    )
    assert len(outbox("account_created")) == 1

    reset = client.post(
        "/api/v1/users/cora/reset-password", headers=bearer(admin), json={"reason": "forgot it"}
    )
    assert reset.status_code == 200
    temporary = reset.json["temporary_password"]
    notice = the_one("password_reset")
    assert notice.recipient_list == ["cora@site.example"]
    assert temporary not in everything_of(notice) and "expires" in notice.body
    assert send(runner).exit_code == 0
    for message in smtp.received:
        assert temporary.encode() not in message.raw and chosen.encode() not in message.raw
    # Control: the check would see the password had it been written.
    assert temporary in everything_of(notice) + temporary


# --- one transaction with the event --------------------------------------------------------


def test_a_notification_exists_only_if_its_event_commits(client, make_user, make_site):
    make_site("S01")
    _, admin = make_user("admin", username="root")
    auth_services.create_user(
        system_actor(), username="ghost", role="dsmb", email="ghost@x.example"
    )
    db.session.rollback()
    assert auth_services.get_user_by_username("ghost") is None
    assert outbox() == []
    # A refused request writes neither the account nor its message.
    refused = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "ghost", "role": "monitor", "sites": ["S09"], "email": "g@x.example"},
    )
    assert refused.status_code == 422
    assert outbox() == []
