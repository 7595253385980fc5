"""The eligibility, randomization, code-break, disposition and deviation pages (issue 24),
driven as a browser would through the test client, and checked against the database, the
audit trail and the JSON API's answers for the same operations."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from flask import g
from flask.testing import FlaskClient
from markupsafe import Markup, escape
from sqlalchemy import func, select

from randomization import lists
from randomization.models import RandomizationSlot
from tests.conftest import bearer, make_ready_for_randomization
from tests.page_helpers import error_summary, post_form, sign_in
from trial.audit.models import AuditEvent
from trial.conduct.models import Disposition, EligibilityAnswer, ProtocolDeviation
from trial.extensions import db
from trial.participants.models import Participant

PASSWORD = "a-long-password-1"
ARMS = ("baclofen", "placebo")
CRITERIA = {"I1": True, "I2": True, "I3": True, "E1": False, "E2": False, "E3": False}
CRITERIA |= {"E4": False, "E5": False}


@pytest.fixture
def trial_list(make_site, make_user):
    """Sites S01 and S02 (small) and a generated list."""
    make_site("S01", planned_enrollment=10)
    make_site("S02", planned_enrollment=10)
    unblinded = make_user("unblinded_statistician")[0]
    lists.generate(unblinded)
    db.session.commit()
    return unblinded


class Browser(FlaskClient):
    """A test client that is a browser of its own: the tests' one app context keeps ``g``
    across requests, and Flask-WTF caches the CSRF token of the last request's session
    there, which would be another browser's."""

    def open(self, *args, **kwargs):
        g.pop("csrf_token", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def person(app, make_user):
    """``person(role, sites=["S01"])`` -> (user, API token, signed-in page client)."""

    def factory(role, sites=("S01",)):
        sites = list(sites) if role in ("coordinator", "investigator", "monitor") else []
        user, token = make_user(role, sites=sites, password=PASSWORD)
        browser = Browser(app, app.response_class, use_cookies=True)
        sign_in(browser, user.username, PASSWORD)
        return user, token, browser

    return factory


def screen(client, token, pid) -> None:
    """A completed screening visit with its baseline day, through the API."""
    day = date.today() - timedelta(days=1)
    response = client.post(
        f"/api/v1/participants/{pid}/visits",
        headers=bearer(token),
        json={
            "visit_code": "screening",
            "visit_date": day.isoformat(),
            "drinking": [{"date": (day - timedelta(days=1)).isoformat(), "standard_drinks": 6}],
        },
    )
    assert response.status_code == 201, response.json


def audit_rows(action=None, entity_type=None) -> int:
    statement = select(func.count()).select_from(AuditEvent)
    if action:
        statement = statement.where(AuditEvent.action == action)
    if entity_type:
        statement = statement.where(AuditEvent.entity_type == entity_type)
    return db.session.scalar(statement)


def allocation(html: str) -> tuple[str, str] | None:
    number = re.search(r"<dt>Randomization number</dt><dd>([^<]+)</dd>", html)
    kit = re.search(r"<dt>Kit number</dt><dd>([^<]+)</dd>", html)
    return (number.group(1), kit.group(1)) if number and kit else None


# --- eligibility ---------------------------------------------------------------------------------


def test_eligibility_answered_through_the_page(client, trial_list, person, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, _, coordinator = person("coordinator")
    url = f"/participants/{pid}/eligibility"
    page = coordinator.get(url)
    assert page.status_code == 200
    assert 'name="answers.I1"' in page.text and "Not every criterion is answered" in page.text
    assert "No completed screening visit" in page.text  # what randomization still needs

    # A bad answer and no answer at all: refused whole, naming the field, nothing saved.
    refused = post_form(coordinator, url, {"answers.I1": "true", "answers.I2": "maybe"})
    assert refused.status_code == 422
    assert any(line.startswith("I2 ") for line in error_summary(refused.text))
    assert 'value="true" checked' in refused.text  # I1's answer is kept
    assert db.session.scalar(select(func.count()).select_from(EligibilityAnswer)) == 0
    empty = post_form(coordinator, url, {})
    assert empty.status_code == 422 and error_summary(empty.text)

    before = audit_rows("create", "eligibility_answer")
    first = post_form(coordinator, url, {"answers.I1": "true", "answers.E1": "false"})
    assert first.status_code == 302
    answers = db.session.scalars(select(EligibilityAnswer)).all()
    assert {(a.criterion, a.met) for a in answers} == {("I1", True), ("E1", False)}
    assert audit_rows("create", "eligibility_answer") > before
    # An answered criterion is no longer offered; answering it again is the service's 409.
    shown = coordinator.get(url).text
    assert 'name="answers.I1"' not in shown and 'name="answers.I2"' in shown
    again = post_form(coordinator, url, {"answers.I1": "false"})
    assert again.status_code == 409 and "Already answered" in " ".join(error_summary(again.text))

    rest = {f"answers.{c}": str(v).lower() for c, v in CRITERIA.items() if c not in ("I1", "E1")}
    assert post_form(coordinator, url, rest).status_code == 302
    done = coordinator.get(url).text
    assert "Eligible: every criterion is answered" in done
    assert "Screening visit: No completed screening visit" in done
    api = client.get(
        f"/api/v1/participants/{pid}/eligibility", headers=bearer(person("monitor")[1])
    )
    assert api.json["eligible"] is True

    _, _, monitor = person("monitor")
    assert monitor.get(url).status_code == 200 and "Save answers" not in monitor.get(url).text
    # The role is refused before the form is read (the policy runs before the CSRF check).
    assert monitor.post(url, data={"answers.I1": "true"}).status_code == 403


# --- randomize -----------------------------------------------------------------------------------


def test_randomize_through_the_page_as_the_api_does(client, trial_list, person, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, token, coordinator = person("coordinator")
    make_ready_for_randomization(client, bearer(token), pid)
    home = f"/participants/{pid}"
    before = coordinator.get(home).text
    assert allocation(before) is None
    checklist = before.index("Eligibility checklist")
    button = before.index('type="submit">Randomize</button>')
    assert checklist < button and "I confirm this participant meets every" in before
    slots_used = select(func.count()).where(RandomizationSlot.participant_id.is_not(None))

    unconfirmed = post_form(coordinator, f"{home}/randomize", {}, form_url=home)
    assert unconfirmed.status_code == 422
    assert any("Confirmation" in line for line in error_summary(unconfirmed.text))
    assert db.session.scalar(slots_used) == 0

    events = audit_rows()
    done = post_form(
        coordinator, f"{home}/randomize", {"eligibility_confirmed": "true"}, form_url=home
    )
    assert done.status_code == 302 and done.headers["Location"].endswith(home)
    after = coordinator.get(home).text
    shown = allocation(after)
    assert shown is not None and "Randomized" in after
    assert 'type="submit">Randomize</button>' not in after
    randomized = [
        (e.field, e.new_value)
        for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.seq > 0, AuditEvent.entity_id == pid)
        )
        if e.action == "randomize"
    ]
    assert {field for field, _ in randomized} == {
        "randomization_number", "kit_number", "randomized_at", "eligibility_confirmed",
    }  # fmt: skip
    assert audit_rows() == events + 5  # four allocation rows and the status change

    # The API answers the same allocation for the same participant; a repeat writes nothing.
    api = client.post(
        f"/api/v1/participants/{pid}/randomize",
        headers=bearer(token),
        json={"eligibility_confirmed": True},
    )
    assert api.status_code == 200
    assert (api.json["randomization_number"], api.json["kit_number"]) == shown
    repeat = post_form(
        coordinator, f"{home}/randomize", {"eligibility_confirmed": "true"},
        form_url=f"{home}/disposition",
    )  # fmt: skip
    assert repeat.status_code == 302
    followed = coordinator.get(home).text
    assert "Already randomized" in followed and allocation(followed) == shown
    assert audit_rows() == events + 5 and db.session.scalar(slots_used) == 1
    # Randomized: the confirmation step goes back to the participant's page.
    assert coordinator.get(f"{home}/randomize").status_code == 302


def test_randomize_refused_until_ready_names_what_is_missing(
    client, trial_list, person, make_participant
):
    pid = make_participant(site="S01")["participant_id"]
    _, token, coordinator = person("coordinator")
    url = f"/participants/{pid}/randomize"
    step = coordinator.get(url)
    assert step.status_code == 200 and "Still needed before randomization" in step.text
    refused = post_form(coordinator, url, {"eligibility_confirmed": "true"})
    assert refused.status_code == 409
    problems = error_summary(refused.text)
    assert any(p.startswith("Screening visit:") for p in problems)
    assert any(p.startswith("Eligibility I1:") for p in problems)
    assert f'href="/participants/{pid}/eligibility#answers-I1"' in refused.text
    assert db.session.scalar(select(Participant.randomized_at).where(
        Participant.participant_id == pid)) is None  # fmt: skip
    assert audit_rows("randomize") == 0

    screen(client, token, pid)
    answered = dict(CRITERIA, E2=True)  # an exclusion criterion met: not eligible
    client.post(
        f"/api/v1/participants/{pid}/eligibility", headers=bearer(token), json={"answers": answered}
    )
    again = post_form(coordinator, url, {"eligibility_confirmed": "true"})
    assert again.status_code == 409
    assert [p for p in error_summary(again.text) if p.startswith("Eligibility")] == [
        "Eligibility E2: Exclusion criterion met: Epilepsy or a history of seizures other than "
        "alcohol withdrawal seizures."
    ]
    assert not any(p.startswith("Screening") for p in error_summary(again.text))


def test_an_exhausted_stratum_is_refused_on_the_page_and_its_notice_kept(
    client, make_site, make_user, person, make_participant
):
    from randomization.models import RandomizationNotice

    make_site("S01")
    lists.import_list(
        make_user("unblinded_statistician")[0],
        "stratum,sequence,arm,block\nsite=S01|sex=F,1,placebo,1\nsite=S01|sex=F,2,baclofen,1\n",
    )
    db.session.commit()
    _, token, coordinator = person("coordinator")
    pids = [make_participant(site="S01", sex="F")["participant_id"] for _ in range(3)]
    for pid in pids:
        make_ready_for_randomization(client, bearer(token), pid)
    for pid in pids[:2]:
        url = f"/participants/{pid}/randomize"
        assert post_form(coordinator, url, {"eligibility_confirmed": "true"}).status_code == 302
    refused = post_form(
        coordinator, f"/participants/{pids[2]}/randomize", {"eligibility_confirmed": "true"}
    )
    assert refused.status_code == 409 and arms_in(refused.text) == set()
    assert "No randomization slot is left" in " ".join(error_summary(refused.text))
    db.session.rollback()
    kinds = set(db.session.scalars(select(RandomizationNotice.kind)))
    assert "stratum_exhausted" in kinds  # committed by the page before it answered
    assert allocation(coordinator.get(f"/participants/{pids[2]}").text) is None


def test_who_sees_the_randomize_form(client, trial_list, person, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, token, coordinator = person("coordinator")
    _, _, monitor = person("monitor")
    _, _, other_site = person("coordinator", sites=("S02",))
    assert monitor.get(f"/participants/{pid}/randomize").status_code == 403
    assert other_site.get(f"/participants/{pid}/randomize").status_code == 404
    page = monitor.get(f"/participants/{pid}").text
    assert "Not randomized." in page and "Randomize</button>" not in page
    make_ready_for_randomization(client, bearer(token), pid)
    post_form(coordinator, f"/participants/{pid}/randomize", {"eligibility_confirmed": "true"})
    read_only = monitor.get(f"/participants/{pid}").text
    assert allocation(read_only) == allocation(coordinator.get(f"/participants/{pid}").text)
    assert "Emergency code-break" not in read_only


# --- the code-break ------------------------------------------------------------------------------


@pytest.fixture
def randomized(client, trial_list, make_user, make_participant):
    """Eight S01 participants randomized (a whole block: both arms), with each one's arm."""
    from randomization.outputs import allocation_key

    _, token = make_user("coordinator", sites=["S01"])
    pids = [make_participant(site="S01", sex="F")["participant_id"] for _ in range(8)]
    for pid in pids:
        make_ready_for_randomization(client, bearer(token), pid)
        response = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=bearer(token),
            json={"eligibility_confirmed": True},
        )
        assert response.status_code == 201
    arm_of = {pid: arm for pid, _number, arm in allocation_key(trial_list)}
    db.session.commit()
    by_arm = {arm: [pid for pid in pids if arm_of[pid] == arm] for arm in ARMS}
    assert all(len(group) >= 2 for group in by_arm.values())
    return by_arm, arm_of


@pytest.fixture
def investigator(person, approve_code_break):
    user, token, browser = person("investigator")
    approve_code_break(user, PASSWORD)
    return user, browser


def break_code(
    browser, pid, reason="anaphylaxis; the ICU asks", password=PASSWORD, confirm=True, form=None
):
    """Post the code-break form (``form``: the page whose CSRF token to send, when the
    participant's own page offers no form any more)."""
    data = {"reason": reason, "password": password, "confirmed": "false"}
    if confirm:
        data["confirmed"] = ["false", "true"]  # the checkbox follows its hidden "false"
    url = f"/participants/{pid}/code-break"
    return post_form(browser, url, data, form_url=form and f"/participants/{form}/code-break")


def arms_in(html: str) -> set[str]:
    """Arm names anywhere in a page (the service's own name aside)."""
    text = html.lower().replace("baclofen aud trial", "")
    return {arm for arm in ARMS if arm in text}


def test_code_break_shows_the_arm_once_at_one_size(randomized, investigator, monkeypatch):
    by_arm, arm_of = randomized
    user, browser = investigator
    first = {arm: by_arm[arm][0] for arm in ARMS}
    for pid in first.values():
        warning = browser.get(f"/participants/{pid}/code-break")
        assert warning.status_code == 200 and "unblinded statistician and the DSMB" in warning.text
        assert arms_in(warning.text) == set()
    shown = {arm: break_code(browser, pid) for arm, pid in first.items()}
    for arm, response in shown.items():
        assert response.status_code == 200
        assert re.search(rf'<strong class="arm">{arm} *</strong>', response.text)
        assert arms_in(response.text) == {arm}  # the scan below finds an arm where one is
    assert len(shown["baclofen"].data) == len(shown["placebo"].data)

    # Control: without the padding the page's size gives the arm away.
    monkeypatch.setattr("randomization.pages.pad_arm", lambda arm: str(escape(arm)))
    unpadded = {arm: break_code(browser, by_arm[arm][1]) for arm in ARMS}
    assert unpadded["baclofen"].status_code == unpadded["placebo"].status_code == 200
    assert len(unpadded["baclofen"].data) != len(unpadded["placebo"].data)

    # Never again: no page a GET shows has the arm, and breaking again is refused.
    for pid in [*first.values(), *(group[1] for group in by_arm.values())]:
        for url in (
            f"/participants/{pid}",
            f"/participants/{pid}/code-break",
            f"/participants/{pid}/randomize",
            f"/participants/{pid}/eligibility",
            f"/participants/{pid}/disposition",
            f"/participants/{pid}/deviations",
        ):
            page = browser.get(url, follow_redirects=True)
            assert page.status_code == 200, url
            assert arms_in(page.text) == set(), url
        participant_page = browser.get(f"/participants/{pid}").text
        assert "Unblinded by an emergency code-break on" in participant_page
        assert f"by {user.username} (investigator)" in participant_page
        assert "Emergency code-break</a>" not in participant_page
    again = break_code(browser, first["placebo"], form=by_arm["placebo"][2])
    assert again.status_code == 409 and arms_in(again.text) == set()
    assert "already broken" in " ".join(error_summary(again.text))
    assert audit_rows("code_break") == 4


def test_code_break_refusals(client, randomized, investigator, person, approve_code_break):
    by_arm, _ = randomized
    pid = by_arm["placebo"][0]
    _, browser = investigator
    rows = audit_rows()

    incomplete = break_code(browser, pid, reason="", confirm=False)
    assert incomplete.status_code == 422
    named = error_summary(incomplete.text)
    assert any(line.startswith("Reason:") for line in named)
    assert any(line.startswith("Confirmation:") for line in named)
    assert audit_rows() == rows and arms_in(incomplete.text) == set()
    unconfirmed = break_code(browser, pid, confirm=False)
    assert unconfirmed.status_code == 422 and "anaphylaxis" in unconfirmed.text  # reason kept
    assert PASSWORD not in unconfirmed.text  # a password is never sent back
    assert audit_rows() == rows

    wrong = break_code(browser, pid, password="not-my-password")
    assert wrong.status_code == 403 and arms_in(wrong.text) == set()
    assert any(line.startswith("Your password:") for line in error_summary(wrong.text))
    db.session.rollback()  # what the page committed is there for anyone
    refusals = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "code_break_refused")
    ).all()
    assert [(e.entity_id, e.reason) for e in refusals] == [(pid, "anaphylaxis; the ICU asks")]
    assert db.session.scalar(select(Participant.unblinded).where(
        Participant.participant_id == pid)) is False  # fmt: skip

    # An investigator nobody approved: refused and recorded before the password is checked.
    _, _, unapproved = person("investigator")
    refused = break_code(unapproved, pid)
    assert refused.status_code == 403 and arms_in(refused.text) == set()
    assert audit_rows("code_break_refused") == 2

    # Other roles and sites: as the API.
    _, _, coordinator = person("coordinator")
    assert coordinator.get(f"/participants/{pid}/code-break").status_code == 403
    posted = coordinator.post(
        f"/participants/{pid}/code-break",
        data={"reason": "x", "password": PASSWORD, "confirmed": "true"},
    )
    assert posted.status_code == 403 and arms_in(posted.text) == set()
    elsewhere, _, other = person("investigator", sites=("S02",))
    approve_code_break(elsewhere, PASSWORD)
    assert other.get(f"/participants/{pid}/code-break").status_code == 404
    assert audit_rows("code_break") == 0


# --- blinding of the participant's page -----------------------------------------------------------


def normalized(html: str) -> str:
    """A page with its ids, numbers, dates and CSRF token made equal (each run of digits
    one 0: record ids of two participants may differ in length)."""
    html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
    return re.sub(r"\d+", "0", html)


@pytest.mark.parametrize("role", ["coordinator", "investigator", "monitor", "data_manager"])
def test_a_blinded_participant_page_does_not_depend_on_the_arm(app, randomized, person, role):
    from trial.web import PARTICIPANT_SECTIONS

    by_arm, arm_of = randomized
    _, _, browser = person(role)
    pages = {arm: browser.get(f"/participants/{by_arm[arm][0]}") for arm in ARMS}
    assert all(page.status_code == 200 for page in pages.values())
    assert all(allocation(page.text) for page in pages.values())
    assert normalized(pages["baclofen"].text) == normalized(pages["placebo"].text)
    # So is every other page of these participants this role may open.
    for suffix in ("eligibility", "disposition", "deviations", "randomize", "code-break"):
        seen = {
            arm: browser.get(f"/participants/{by_arm[arm][0]}/{suffix}", follow_redirects=True)
            for arm in ARMS
        }
        assert seen["baclofen"].status_code == seen["placebo"].status_code, suffix
        assert normalized(seen["baclofen"].text) == normalized(seen["placebo"].text), suffix

    # Control: a section whose markup depends on the arm is caught by the same comparison.
    def leaky(participant):
        return Markup(f'<p class="note-{arm_of[participant.participant_id][0]}"></p>')

    app.extensions[PARTICIPANT_SECTIONS].append(leaky)
    try:
        leaked = {arm: browser.get(f"/participants/{by_arm[arm][0]}").text for arm in ARMS}
    finally:
        app.extensions[PARTICIPANT_SECTIONS].remove(leaky)
    assert normalized(leaked["baclofen"]) != normalized(leaked["placebo"])


# --- disposition and deviations -------------------------------------------------------------------


def test_disposition_through_the_page(client, trial_list, person, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, _, coordinator = person("coordinator")
    url = f"/participants/{pid}/disposition"
    assert "No disposition recorded" in coordinator.get(url).text

    before_randomization = post_form(
        coordinator, url, {"status": "completed", "date": "2026-02-01"}
    )
    assert before_randomization.status_code == 409
    assert "Before randomization, record screen_failure." in " ".join(
        error_summary(before_randomization.text)
    )
    no_reason = post_form(coordinator, url, {"status": "screen_failure", "date": "2026-02-01"})
    assert no_reason.status_code == 422
    assert [line.split(":")[0] for line in error_summary(no_reason.text)] == ["Reason"]
    assert 'value="2026-02-01"' in no_reason.text  # the entered date is kept
    bad = post_form(coordinator, url, {"status": "gone", "date": "someday"})
    assert bad.status_code == 422
    assert {line.split(":")[0] for line in error_summary(bad.text)} == {"Disposition", "Date"}
    assert db.session.scalar(select(func.count()).select_from(Disposition)) == 0

    saved = post_form(
        coordinator,
        url,
        {"status": "screen_failure", "date": "2026-02-01", "reason": "AUDIT score too low"},
    )
    assert saved.status_code == 302
    record = db.session.scalars(select(Disposition)).one()
    assert (record.status, record.reason) == ("screen_failure", "AUDIT score too low")
    assert audit_rows("create", "disposition") >= 1
    page = coordinator.get(url).text
    assert "AUDIT score too low" in page and "Screen failure" in page
    participant = db.session.scalar(select(Participant).where(Participant.participant_id == pid))
    assert participant.status == "screen_failure"

    _, _, monitor = person("monitor")
    assert "AUDIT score too low" in monitor.get(url).text
    assert "Record disposition" not in monitor.get(url).text
    assert monitor.post(url, data={"status": "withdrew"}).status_code == 403


def test_deviation_through_the_page(client, trial_list, person, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, _, coordinator = person("coordinator")
    url = f"/participants/{pid}/deviations"
    refused = post_form(coordinator, url, {"date": "2026-02-03", "description": ""})
    assert refused.status_code == 422
    assert {line.split(":")[0] for line in error_summary(refused.text)} == {
        "Category", "Description",
    }  # fmt: skip
    future = (date.today() + timedelta(days=3)).isoformat()
    late = post_form(
        coordinator,
        url,
        {"category": "procedure", "description": "Labs drawn late", "date": future},
    )
    assert late.status_code == 422 and "Labs drawn late" in late.text
    assert db.session.scalar(select(func.count()).select_from(ProtocolDeviation)) == 0

    saved = post_form(
        coordinator,
        url,
        {"category": "procedure", "description": "Labs drawn late", "date": "2026-02-03"},
    )
    assert saved.status_code == 302
    deviation = db.session.scalars(select(ProtocolDeviation)).one()
    assert (deviation.category, deviation.date) == ("procedure", date(2026, 2, 3))
    assert audit_rows("create", "protocol_deviation") >= 1
    page = coordinator.get(url).text
    assert "Labs drawn late" in page and "Site staff" in page
