"""Blinding matrix: no blinded role gets an arm, or what would decrypt one, from any output.

A small trial is built (two sites, a generated list, participants of both arms randomized,
a stratum exhausted, one emergency code-break, the unblinded statistician reading the list
and the key). Then every GET route in ``app.url_map`` is called as each blinded role, with
its path parameters filled with real ids, and every body and header is scanned for arm
labels, arm ciphertexts, the list seed and the arm key. Routes the role may not call are
scanned too (their 403 must not leak either). Positive controls prove the scan finds an arm
where one is.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from randomization import lists, outputs
from randomization.crypto import decrypt_seed
from randomization.models import RandomizationList, RandomizationSlot
from tests.conftest import approve_for_code_break, bearer, make_ready_for_randomization
from tests.page_helpers import sign_in
from trial.auth.policy import is_page_endpoint, policy_for
from trial.extensions import db

ARM_LABELS = ("baclofen", "placebo")
PASSWORD = "correct horse battery staple"
BLINDED_ROLES = ("admin", "coordinator", "investigator", "monitor", "data_manager", "statistician")
# Static text that names the drug as the trial's subject, not as anyone's allocation: the
# OpenAPI title is built at start, before any list exists, and is the same for every caller.
# The pages carry the trial's name in their title and header, the same on every page.
STATIC_MENTIONS = ("Baclofen AUD trial data service", "Baclofen AUD trial")
# Query strings worth trying on list routes (the empty one is always tried).
QUERY_VARIANTS = {
    "participants.list_participants": [
        "?status=randomized",
        "?status=screening",
        "?site=S01",
        "?site=S02",
    ],
    "audit.list_audit_events": [
        "?entity_type=participant",
        "?action=code_break",
        "?action=randomize",
        "?entity_type=randomization_list",
        "?entity_type=export",
    ],
    "safety.search_meddra_terms": ["?q=fall", "?q=s&limit=50"],
    "safety.list_expedited_reports": ["?status=open", "?site=S01"],
}


def randomize(client, token, pid):
    make_ready_for_randomization(client, bearer(token), pid)
    return client.post(
        f"/api/v1/participants/{pid}/randomize",
        headers=bearer(token),
        json={"eligibility_confirmed": True},
    )


@dataclass
class Trial:
    """What the matrix needs to know about the trial it scans."""

    participant_ids: list[str]
    arm_of: dict[str, str]  # from the key (unblinded statistician)
    allocations: dict[str, tuple[bytes, dict]]  # pid -> (raw 201 body, headers)
    repeats: dict[str, bytes]  # pid -> raw 200 body of a repeat
    exhausted: object  # the 409 response
    code_break: object  # the investigator's 200 (carries the arm)
    broken_pid: str
    investigator_token: str
    unblinded_token: str
    secrets: list[str] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)  # data queries at S01 and S02
    record_ids: list[str] = field(default_factory=list)  # captured records (AEs, ...)
    visit_ids: list[str] = field(default_factory=list)  # visits with their forms
    usernames: list[str] = field(default_factory=list)  # accounts (code-break approval)


def secret_material(app) -> list[str]:
    """Every string that would decrypt or reveal an arm: key, seed, ciphertexts."""
    key = app.config["ARM_KEY"]
    found = [key, base64.urlsafe_b64decode(key).hex()]
    for row in db.session.scalars(select(RandomizationList)):
        if row.seed_encrypted:
            seed = decrypt_seed(row.seed_encrypted)
            found += [
                row.seed_encrypted,
                seed.hex(),
                base64.b64encode(seed).decode(),
                base64.urlsafe_b64encode(seed).decode(),
            ]
    found += list(db.session.scalars(select(RandomizationSlot.arm_encrypted)))
    return found


def leaks(text: str, secrets: list[str]) -> list[str]:
    """Name each arm label or secret present in ``text``."""
    for phrase in STATIC_MENTIONS:
        text = text.replace(phrase, "")
    lowered = text.lower()
    found = [label for label in ARM_LABELS if label in lowered]
    found += [f"secret {s[:12]}..." for s in secrets if s and s in text]
    return found


def response_text(response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    if response.mimetype == "application/pdf":  # a safety report: scan what a reader sees
        from tests.test_reports_pdf import report_text

        return headers + "\n\n" + report_text(response.get_data())
    if response.mimetype == "application/zip":  # a dataset bundle: scan every file in it
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
            files = [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
        return headers + "\n\n" + "\n".join(files)
    return headers + "\n\n" + response.get_data(as_text=True)


def build_trial(
    app, client, make_site, make_user, make_participant, before_allocations=lambda: None
) -> Trial:
    make_site("S01", planned_enrollment=10)  # 12 slots per sex stratum
    make_site("S02", planned_enrollment=1)  # 2-6 slots per sex stratum (whole blocks)
    unblinded_user, unblinded_token = make_user("unblinded_statistician")
    lists.generate(unblinded_user)
    db.session.commit()
    secrets = secret_material(app)  # fixed once the list exists
    coordinators = {site: make_user("coordinator", sites=[site])[1] for site in ("S01", "S02")}
    investigator_user, investigator = make_user("investigator", sites=["S01"], password=PASSWORD)
    approve_for_code_break(investigator_user, PASSWORD)

    def enrol(site, sex, n):
        return [make_participant(site=site, sex=sex)["participant_id"] for _ in range(n)]

    s02_f_slots = len(
        db.session.scalars(
            select(RandomizationSlot.id).where(RandomizationSlot.stratum == "site=S02|sex=F")
        ).all()
    )
    to_randomize = (
        enrol("S01", "F", 4)
        + enrol("S01", "M", 4)
        + enrol("S02", "F", s02_f_slots)
        + enrol("S02", "M", 1)
    )
    not_randomized = enrol("S01", "F", 1)
    refused_pid = enrol("S02", "F", 1)[0]
    before_allocations()
    allocations, repeats = {}, {}
    for pid in to_randomize:
        token = coordinators[pid[:3]]
        first = randomize(client, token, pid)
        assert first.status_code == 201, first.json
        allocations[pid] = (first.get_data(), dict(first.headers))
        again = randomize(client, token, pid)
        assert again.status_code == 200
        repeats[pid] = again.get_data()
    exhausted = randomize(client, coordinators["S02"], refused_pid)
    assert exhausted.status_code == 409, exhausted.json

    broken_pid = to_randomize[0]
    url = f"/api/v1/participants/{broken_pid}/code-break"
    refused = client.post(
        url,
        headers=bearer(investigator),
        json={"reason": "wrong password first", "password": "nope"},
    )
    assert refused.status_code == 403
    code_break = client.post(
        url,
        headers=bearer(investigator),
        json={"reason": "suspected overdose", "password": PASSWORD},
    )
    assert code_break.status_code == 200, code_break.json

    # Unblinded reads are audit events; blinded readers of the trail must not see arms there.
    assert (
        client.get("/api/v1/randomization/list", headers=bearer(unblinded_token)).status_code == 200
    )
    assert client.get("/api/v1/exports/key", headers=bearer(unblinded_token)).status_code == 200
    arm_of = {pid: arm for pid, _, arm in outputs.allocation_key(unblinded_user)}
    db.session.rollback()
    assert set(arm_of) == set(to_randomize)
    assert set(arm_of.values()) == set(ARM_LABELS), "both arms must be represented"
    query_ids = raise_queries(client, make_user, coordinators, [broken_pid, to_randomize[-1]])
    record_ids = report_adverse_events(client, coordinators, [broken_pid, to_randomize[-1]])
    visit_ids, form_ids = record_visits(client, coordinators, [broken_pid, to_randomize[-1]])
    return Trial(
        participant_ids=to_randomize + not_randomized + [refused_pid],
        arm_of=arm_of,
        allocations=allocations,
        repeats=repeats,
        exhausted=exhausted,
        code_break=code_break,
        broken_pid=broken_pid,
        investigator_token=investigator,
        unblinded_token=unblinded_token,
        secrets=secrets,
        query_ids=query_ids,
        record_ids=record_ids + form_ids,
        visit_ids=visit_ids,
        usernames=[investigator_user.username],
    )


def record_visits(client, coordinators, pids) -> tuple[list[str], list[str]]:
    """A baseline visit with every form, plus a dose, per participant, so visit and form
    reads have content."""
    visit_ids, form_ids = [], []
    today = date.today()
    for pid in pids:
        headers = bearer(coordinators[pid[:3]])
        visit = client.post(
            f"/api/v1/participants/{pid}/visits",
            headers=headers,
            json={
                "visit_code": "baseline",
                "visit_date": today.isoformat(),
                "drinking": [
                    {"date": (today - timedelta(days=1)).isoformat(), "standard_drinks": 7}
                ],
                "ocds": {f"item_{n}": 2 for n in range(1, 15)},
                "ciwa": {
                    "nausea_vomiting": 1,
                    "tremor": 1,
                    "paroxysmal_sweats": 0,
                    "anxiety": 2,
                    "agitation": 0,
                    "tactile_disturbances": 0,
                    "auditory_disturbances": 0,
                    "visual_disturbances": 0,
                    "headache": 1,
                    "orientation": 0,
                },
                "vitals": {"systolic_bp": 128, "diastolic_bp": 82, "heart_rate": 70},
                "labs": [{"test": "GGT", "value": 90, "unit": "U/L", "upper_limit_normal": 55}],
                # A guess of "don't know": a guess that names an arm is a value someone
                # entered, which this scan for arm labels cannot tell from an arm (the
                # bundle's guesses are checked by swapping the arms instead, below).
                "blinding": [
                    {"respondent": "participant", "guess": "dont_know", "confidence": None}
                ],
            },
        )
        assert visit.status_code == 201, visit.json
        body = visit.json
        visit_ids.append(str(body["id"]))
        form_ids += [str(body[k]["id"]) for k in ("ocds", "ciwa", "vitals")]
        form_ids += [str(r["id"]) for r in body["drinking"] + body["labs"] + body["blinding"]]
        answers = client.get(f"/api/v1/participants/{pid}/eligibility", headers=headers)
        form_ids += [str(c["record_id"]) for c in answers.json["criteria"]]
        dose = client.post(
            f"/api/v1/participants/{pid}/dosing",
            headers=headers,
            json={"date": today.isoformat(), "tablets_per_day": 3},
        )
        assert dose.status_code == 201, dose.json
        form_ids.append(str(dose.json["id"]))
        deviation = client.post(
            f"/api/v1/participants/{pid}/deviations",
            headers=headers,
            json={"category": "procedure", "description": "Late labs.", "date": today.isoformat()},
        )
        assert deviation.status_code == 201, deviation.json
        disposition = client.post(
            f"/api/v1/participants/{pid}/disposition",
            headers=headers,
            json={"status": "withdrew", "date": today.isoformat(), "reason": "moved away"},
        )
        assert disposition.status_code == 201, disposition.json
        form_ids += [str(deviation.json["id"]), str(disposition.json["id"])]
    return visit_ids, form_ids


def raise_queries(client, make_user, coordinators, pids) -> list[str]:
    """A data query per participant (one per site), answered, so query reads have content."""
    _, data_manager = make_user("data_manager")
    ids = []
    for pid in pids:
        raised = client.post(
            "/api/v1/queries",
            headers=bearer(data_manager),
            json={"entity": "participant", "record_id": pid, "field": "sex", "text": "Check."},
        )
        assert raised.status_code == 201, raised.json
        query_id = str(raised.json["query_id"])
        answer = client.post(
            f"/api/v1/queries/{query_id}/answer",
            headers=bearer(coordinators[pid[:3]]),
            json={"text": "Checked against the source."},
        )
        assert answer.status_code == 200, answer.json
        ids.append(query_id)
    return ids


def report_adverse_events(client, coordinators, pids) -> list[str]:
    """Per participant (one per site): a coded, a serious and an uncoded AE, and one corrected
    and one entered in error, so AE reads, lists and the audit trail have content."""
    ids = []
    for pid in pids:
        headers = bearer(coordinators[pid[:3]])
        for term, extra in (
            ("Somnolence", {"serious": False, "grade": 2}),
            (
                "Fall",
                {
                    "serious": True,
                    "seriousness_criteria": ["hospitalisation"],
                    "grade": 3,
                    "awareness_date": date.today().isoformat(),
                },
            ),
            ("feels odd in a way not in any dictionary", {"serious": False, "grade": 1}),
        ):
            created = client.post(
                f"/api/v1/participants/{pid}/adverse-events",
                headers=headers,
                json={
                    "term": term,
                    "onset_date": date.today().isoformat(),
                    "relatedness": "possible",
                    "action_taken": "none",
                    "outcome": "recovering",
                    **extra,
                },
            )
            assert created.status_code == 201, created.json
            ids.append(str(created.json["id"]))
        corrected = client.patch(
            f"/api/v1/adverse-events/{ids[-3]}",
            headers=headers,
            json={"grade": 3, "reason": "source document"},
        )
        assert corrected.status_code == 200, corrected.json
        withdrawn = client.post(
            f"/api/v1/adverse-events/{ids[-1]}/entered-in-error",
            headers=headers,
            json={"reason": "duplicate"},
        )
        assert withdrawn.status_code == 200, withdrawn.json
    return ids


@pytest.fixture
def trial(app, client, make_site, make_user, make_participant) -> Trial:
    return build_trial(app, client, make_site, make_user, make_participant)


def get_routes(app):
    """Every GET route as (endpoint, rule), from the URL map itself."""
    return sorted(
        ((rule.endpoint, rule) for rule in app.url_map.iter_rules() if "GET" in rule.methods),
        key=lambda item: item[1].rule,
    )


def urls_for(rule, endpoint, trial: Trial) -> list[str]:
    """Concrete URLs for a rule: path parameters filled with every real id, plus queries."""
    fillers = {
        "participant_id": trial.participant_ids + ["S09-9999"],
        "query_id": trial.query_ids + ["999999"],
        "record_id": trial.record_ids + ["999999"],
        "visit_id": trial.visit_ids + ["999999"],
        "username": trial.usernames + ["nobody.here"],
        # The pages' generic record pages: two kinds, with every record id above.
        "entity": ["vitals", "dosing"],
        "filename": ["site.css", "site.js"],
    }
    unknown = set(rule.arguments) - set(fillers)
    assert not unknown, (
        f"{rule.rule}: no filler for {sorted(unknown)}; teach the blinding "
        f"matrix how to fill it so the route is scanned"
    )
    paths = [rule.rule]
    for name in sorted(rule.arguments):
        placeholder = re.compile(rf"<(?:[^<>:]+:)?{name}>")  # <name> or <int:name>
        paths = [placeholder.sub(value, path) for path in paths for value in fillers[name]]
    return [path + query for path in paths for query in [""] + QUERY_VARIANTS.get(endpoint, [])]


def fetch_all_audit(client, token, query="") -> list[dict]:
    """Page through the whole trail this token may read."""
    events, after = [], 0
    joiner = "&" if query else "?"
    while True:
        page = client.get(
            f"/api/v1/audit{query}{joiner}after_seq={after}&limit=1000", headers=bearer(token)
        )
        assert page.status_code == 200, page.json
        if not page.json:
            return events
        events += page.json
        after = page.json[-1]["seq"]


VIEWERS = {
    "admin": [],
    "coordinator": ["S01"],
    "coordinator@S02": ["S02"],
    "investigator": ["S01"],
    "monitor": ["S01", "S02"],
    "data_manager": [],
    "statistician": [],
}


# Pages the scan does not open: signing out would end the scanning session.
UNSCANNED_PAGES = {"web.sign_out"}


def scan_role(app, client, token, role, trial: Trial, pages=None) -> tuple[list[str], dict]:
    """GET every route as ``role`` (the API with its token, the pages with ``pages``, a test
    client signed in as the same account); return the leaks found and the 200s per endpoint
    (a page's redirect to another page counts: the home page sends site staff on)."""
    problems, answered = [], {}
    for endpoint, rule in get_routes(app):
        if endpoint in UNSCANNED_PAGES:
            continue
        policy = policy_for(app, endpoint)
        allowed = policy is not None and policy.permits(role)
        page = is_page_endpoint(app, endpoint)
        for url in urls_for(rule, endpoint, trial):
            response = pages.get(url) if page else client.get(url, headers=bearer(token))
            assert response.status_code < 500, (url, response.status_code)
            redirected = response.status_code == 302 and not response.headers[
                "Location"
            ].startswith("/sign-in")
            if not allowed:
                assert response.status_code == 403, (url, response.status_code)
            elif response.status_code == 200 or (page and redirected):
                answered[endpoint] = answered.get(endpoint, 0) + 1
            found = leaks(response_text(response), trial.secrets)
            if found:
                problems.append(f"{response.status_code} GET {url}: {found}")
    return problems, answered


@pytest.mark.parametrize("viewer", list(VIEWERS))
def test_blinded_role_sees_no_arm_on_any_get_route(app, client, make_user, trial, viewer):
    role = viewer.split("@")[0]
    assert role in BLINDED_ROLES
    if viewer == "investigator":
        token = trial.investigator_token  # the one who broke the code: blinded again after
        username = trial.usernames[0]
    else:
        user, token = make_user(role, sites=VIEWERS[viewer], password=PASSWORD)
        username = user.username
    pages = app.test_client()
    sign_in(pages, username, PASSWORD)
    problems, answered = scan_role(app, client, token, role, trial, pages)
    assert not problems, "\n".join(problems)
    # Not vacuous: every route the policy allows answered 200 at least once.
    allowed_endpoints = {
        e for e, _ in get_routes(app) if policy_for(app, e).permits(role)
    } - UNSCANNED_PAGES
    assert set(answered) == allowed_endpoints, sorted(allowed_endpoints - set(answered))
    if policy_for(app, "audit.list_audit_events").permits(role):
        check_whole_audit_trail(client, token, VIEWERS[viewer] or ["S01", "S02"], trial)


def check_whole_audit_trail(client, token, sites, trial: Trial) -> None:
    """Every audit entry the role can read, all pages, carries no arm or secret."""
    events = fetch_all_audit(client, token)
    actions = {event["action"] for event in events}
    assert "randomize" in actions  # the scan reads the interesting rows
    if "S01" in sites:
        assert {"code_break", "code_break_refused"} <= actions
    assert leaks(json.dumps(events), trial.secrets) == [], [
        e for e in events if leaks(json.dumps(e), trial.secrets)
    ]


def test_controls_the_scan_finds_arms_where_they_are(client, trial):
    """Positive controls: unblinded outputs and the code-break answer do name the arm."""
    listing = client.get("/api/v1/randomization/list", headers=bearer(trial.unblinded_token))
    assert listing.status_code == 200
    assert set(leaks(response_text(listing), trial.secrets)) >= set(ARM_LABELS)
    key = client.get("/api/v1/exports/key", headers=bearer(trial.unblinded_token))
    assert set(leaks(response_text(key), trial.secrets)) >= set(ARM_LABELS)
    assert trial.arm_of[trial.broken_pid] in leaks(response_text(trial.code_break), [])
    # The secret half of the scan finds a ciphertext, the key and the seed when present.
    for secret in (trial.secrets[0], trial.secrets[2], trial.secrets[-1]):
        assert leaks(f"x{secret}y", trial.secrets), secret[:12]
    # The static allowance hides only the spec title, never an arm elsewhere.
    assert leaks("Baclofen AUD trial data service; arm: Baclofen", []) == ["baclofen"]


def test_control_the_matrix_catches_a_blinded_route_that_leaks(
    app, client, make_user, trial, monkeypatch
):
    """Negative control: make the blinded allocation read carry the arm; the walk sees it."""
    from randomization import views
    from randomization.crypto import decrypt_arm

    honest = views._blinded

    def leaky(participant, slot):
        body = honest(participant, slot)
        body["kit_number"] = ARM_LABELS[
            decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)
        ]
        return body

    monkeypatch.setattr(views, "_blinded", leaky)
    user, token = make_user("monitor", sites=["S01", "S02"], password=PASSWORD)
    pages = app.test_client()
    sign_in(pages, user.username, PASSWORD)
    problems, _ = scan_role(app, client, token, "monitor", trial, pages)
    assert problems and all("/randomization" in p for p in problems), problems


def test_control_the_matrix_catches_a_page_that_leaks(app, client, make_user, trial, monkeypatch):
    """Negative control for the pages: a participant-page section that prints the arm (as a
    careless feature might) is found by the same walk, on the participant pages only."""
    from markupsafe import Markup

    from randomization.crypto import decrypt_arm
    from randomization.services import allocation_of
    from trial.web import PARTICIPANT_SECTIONS

    def leaky_section(participant):
        slot = allocation_of(participant)
        if slot is None:
            return Markup("")
        return Markup(ARM_LABELS[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)])

    sections = [*app.extensions[PARTICIPANT_SECTIONS], leaky_section]
    monkeypatch.setitem(app.extensions, PARTICIPANT_SECTIONS, sections)
    user, token = make_user("monitor", sites=["S01", "S02"], password=PASSWORD)
    pages = app.test_client()
    sign_in(pages, user.username, PASSWORD)
    problems, _ = scan_role(app, client, token, "monitor", trial, pages)
    assert problems and all(re.search(r"GET /participants/S0\d-\d+:", p) for p in problems), (
        problems
    )


def test_allocation_responses_have_the_same_shape_and_size_whatever_the_arm(
    client, make_user, trial
):
    """Bodies, headers and lengths of every blinded allocation answer are arm-independent."""
    assert set(trial.arm_of.values()) == set(ARM_LABELS)
    monitor = make_user("monitor", sites=["S01", "S02"])[1]
    shapes: dict[str, set] = {arm: set() for arm in ARM_LABELS}
    for pid, (body, headers) in trial.allocations.items():
        arm = trial.arm_of[pid]
        got = client.get(f"/api/v1/participants/{pid}/randomization", headers=bearer(monitor))
        assert got.status_code == 200
        for kind, raw, head in (
            ("created", body, headers),
            ("repeat", trial.repeats[pid], None),
            ("read", got.get_data(), dict(got.headers)),
        ):
            parsed = json.loads(raw)
            shape = (
                kind,
                tuple(parsed),
                len(raw),
                tuple(len(str(v)) for v in parsed.values()),
                tuple(sorted(head)) if head else None,
                head.get("Content-Length") if head else None,
            )
            shapes[arm].add(shape)
        assert json.loads(trial.repeats[pid]) == json.loads(body)
    assert shapes["baclofen"] == shapes["placebo"], shapes
    assert len({s[2] for s in shapes["baclofen"]}) == 1, "every allocation body has one length"


def test_exhausted_stratum_409_names_no_arm(trial):
    response = trial.exhausted
    assert response.status_code == 409
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert leaks(response_text(response), trial.secrets) == []


def test_log_output_during_randomize_and_code_break_names_no_arm(
    app, client, make_site, make_user, make_participant, caplog
):
    """Nothing the process logs (SQL echo included) names an arm.

    The application itself logs little on a good day, so SQL logging at DEBUG (statements,
    parameters and result rows) is switched on too: the scan then reads everything the
    allocation and the code-break touched. SQL rows do carry the ciphertexts (that is what the
    table holds), so the secret scan covers the application's own loggers only.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    # Capture from the first allocation on: list generation logs the protocol's arm names
    # (the list's parameters row), which is not an allocation.
    built = build_trial(
        app, client, make_site, make_user, make_participant, before_allocations=caplog.clear
    )
    app.logger.info("control line")
    records = caplog.records
    assert len(records) > 100 and any(r.getMessage() == "control line" for r in records)
    assert any("randomization_slots" in r.getMessage() for r in records)
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    assert [label for label in ARM_LABELS if label in text.lower()] == []
    own = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in records
        if not r.name.startswith("sqlalchemy")
    )
    assert leaks(own, built.secrets) == []


# --- the blinded bundle's guesses of the arm (issue 26) ------------------------------------
#
# The blinding assessment puts guesses of the arm into the blinded bundle. A guess is what
# someone believed, not the allocation: the bundle may name an arm only in a guess, and its
# bytes (the guesses' file, its size and its order among them) must be the same whatever
# the arms are. The arms are swapped where the randomization package decrypts them (as in
# tests/test_release_blinding.py) and replaced by an arm key that decrypts nothing.

GUESS_LIST_SEED = bytes(range(64, 96))
# Answers given in turn, whatever the arm: (participant's, investigator's or None).
GUESS_ANSWERS = (
    (("baclofen", "strongly"), ("dont_know", None)),
    (("placebo", "somewhat"), ("placebo", "strongly")),
    (("dont_know", None), None),
    (("baclofen", "somewhat"), ("baclofen", "somewhat")),
)


@dataclass
class Guessed:
    arm_of: dict[str, str]  # the real allocation, for checking
    unblinded: str  # the unblinded statistician's username
    statistician_token: str


@pytest.fixture
def guessed(app, client, make_site, make_user, make_participant) -> Guessed:
    """Eight participants of both arms (a fixed list seed), each with a week-12 visit whose
    guesses are given in turn from GUESS_ANSWERS (never from the arm)."""
    from tests.capture_helpers import Trial as CaptureTrial
    from tests.demo_helpers import fixed_list_seed

    with fixed_list_seed(GUESS_LIST_SEED):
        capture = CaptureTrial(client, make_site, make_user, make_participant)
    for index in range(8):
        p = capture.enrol(site=("S01", "S02")[index % 2], sex="FM"[index // 2 % 2], day0_ago=90)
        mine, theirs = GUESS_ANSWERS[index % len(GUESS_ANSWERS)]
        answers = [{"respondent": "participant", "guess": mine[0], "confidence": mine[1]}]
        if theirs is not None:
            answers.append(
                {"respondent": "investigator", "guess": theirs[0], "confidence": theirs[1]}
            )
        visit = capture.visit(
            p.pid, "week_12", p.day0 + timedelta(days=84), site=p.site, blinding=answers
        )
        assert visit.status_code == 201, visit.json
    unblinded, _ = make_user("unblinded_statistician", username="unblinded.guesses")
    arm_of = {pid: arm for pid, _, arm in outputs.allocation_key(unblinded)}
    db.session.rollback()
    assert len(arm_of) == 8 and set(arm_of.values()) == set(ARM_LABELS)
    _, token = make_user("statistician", username="stat.guesses")
    db.session.remove()
    return Guessed(arm_of, "unblinded.guesses", token)


@contextmanager
def every_arm_swapped():
    """The same trial with every arm swapped (baclofen <-> placebo) wherever the
    randomization package decrypts one."""
    from randomization import code_break, crypto, minimization_claim

    real = crypto.decrypt_arm
    with pytest.MonkeyPatch.context() as patch:
        for module in (minimization_claim, outputs, code_break):
            patch.setattr(module, "decrypt_arm", lambda s, q, t: 1 - real(s, q, t))
        yield


def guess_bundles(runner, tmp_path, cutoff: str) -> dict[str, bytes]:
    """The statistician's bundle of the cut in every format, and with dummy arms."""
    found = {}
    for name, options in (
        ("csv", ["--format", "csv"]),
        ("xpt", ["--format", "xpt"]),
        ("parquet", ["--format", "parquet"]),
        ("dummy", ["--dummy-arms", "3"]),
    ):
        out = tmp_path / f"{name}.zip"
        result = runner.invoke(
            args=["exports", "blinded", "--as", "stat.guesses", "--out", str(out)]
            + ["--cutoff", cutoff, *options]
        )
        assert result.exit_code == 0, result.output
        found[name] = out.read_bytes()
    db.session.remove()
    return found


def zip_members(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def guess_rows(data: bytes) -> list[dict]:
    import csv
    import io

    text = zip_members(data)["blinding_assessments.csv"].decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_the_bundle_s_guesses_do_not_depend_on_the_arm(app, runner, guessed, tmp_path):
    from cryptography.fernet import Fernet

    from tests.test_exports_bundle import now_cutoff
    from trial.auth.services import get_user_by_username

    cutoff = now_cutoff()
    real = guess_bundles(runner, tmp_path, cutoff)
    # Not vacuous: guesses of both kinds, by participants of both arms.
    rows = guess_rows(real["csv"])
    assert len(rows) == 14
    assert {guessed.arm_of[r["participant_id"]] for r in rows} == set(ARM_LABELS)
    assert {r["guess"] for r in rows} == {*ARM_LABELS, "dont_know"}
    with every_arm_swapped():
        swapped_key = outputs.allocation_key(get_user_by_username(guessed.unblinded))
        db.session.rollback()
        assert all(guessed.arm_of[pid] != arm for pid, _, arm in swapped_key)  # swapped
        swapped = guess_bundles(runner, tmp_path, cutoff)
    for name in real:
        assert swapped[name] == real[name], name  # every file, byte for byte
    # Under an arm key that decrypts nothing, the same bundles: none is read from an arm.
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(app.config, "ARM_KEY", Fernet.generate_key().decode())
        assert guess_bundles(runner, tmp_path, cutoff) == real


def test_control_a_guess_file_ordered_by_arm_is_caught(app, runner, guessed, tmp_path, monkeypatch):
    """Negative control: the guesses' file with its participants ordered by arm (a careless
    sort) differs once the arms are swapped, with the same size: the comparison above
    catches an order that follows the arm, which a row count or a size would not."""
    from exports.tables import visits
    from tests.test_exports_bundle import now_cutoff
    from trial.auth.services import get_user_by_username
    from trial.forms.models import BlindingAssessment

    honest = visits.record_groups

    def by_arm(model, *args, **kwargs):
        groups = honest(model, *args, **kwargs)
        if model is not BlindingAssessment:
            return groups

        def leaky(ctx):
            key = outputs.allocation_key(get_user_by_username(guessed.unblinded))
            arm = {pid: arm for pid, _, arm in key}
            return iter(sorted(groups(ctx), key=lambda g: arm[g.facts.participant_id]))

        return leaky

    monkeypatch.setattr(visits, "record_groups", by_arm)
    cutoff = now_cutoff()
    real = zip_members(guess_bundles(runner, tmp_path, cutoff)["csv"])
    with every_arm_swapped():
        swapped = zip_members(guess_bundles(runner, tmp_path, cutoff)["csv"])
    name = "blinding_assessments.csv"
    assert swapped[name] != real[name]
    assert len(swapped[name]) == len(real[name])
    assert sorted(swapped[name].splitlines()) == sorted(real[name].splitlines())


def test_the_bundle_names_an_arm_only_in_a_guess(app, client, guessed):
    """The statistician's bundle, scanned as the matrix scans every route: no arm and no
    secret in any file (dictionary and README included), the guesses' other columns
    included; the guess column itself does name arms (the control: the scan reads it)."""
    from tests.test_exports_leak import GUESS_FILE, guesses_and_the_rest

    response = client.get("/api/v1/exports/blinded", headers=bearer(guessed.statistician_token))
    assert response.status_code == 200, response.json
    files = zip_members(response.get_data())
    secrets = secret_material(app)
    assert GUESS_FILE in files and "dictionary.csv" in files and "README.txt" in files
    for name, data in files.items():
        text = data.decode("utf-8")
        if name == GUESS_FILE:
            guesses, text = guesses_and_the_rest(data)
            assert set(guesses) == {*ARM_LABELS, "dont_know"}
            assert set(leaks(data.decode(), secrets)) == set(ARM_LABELS)  # the control
        assert leaks(text, secrets) == [], name
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    assert leaks(headers, secrets) == []
