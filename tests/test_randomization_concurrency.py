"""Concurrent allocation through real gunicorn workers is exact, on SQLite and PostgreSQL.

120 participants of one stratum (site S01, sex F) are randomized at once by 16 client threads
through four gunicorn worker processes. Every answer must be a 201; what each client was told
must be what the database holds; the slots used must be exactly sequences 1..120 of the
stratum; randomization numbers must be unique; ``randomization verify`` and the audit chain
must pass. Twenty concurrent repeats for one participant must give one allocation. A negative
control sends the same load to a read-then-write allocation without a lock
(``tests/unsafe_allocation_app.py``) and shows that the same checks catch it.

Each test prints its figures (requests, statuses, duplicates, mismatches, gaps) for the
closing note; run with ``-s`` to see them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import select

from randomization import lists
from randomization.models import RandomizationSlot
from randomization.schemas import FixedTimestamp
from tests.conftest import bearer, make_ready_in_process
from tests.live_server import live_server
from trial.audit.models import AuditEvent
from trial.audit.services import verify_chain
from trial.extensions import db
from trial.participants.models import Participant

pytestmark = pytest.mark.slow

PARTICIPANTS = 120
CLIENTS = 16
WORKERS = 4
REPEATS = 20
STRATUM = "site=S01|sex=F"
UNSAFE_APP = "tests.unsafe_allocation_app:build_app()"
# The naive route pauses this long between its read and its write, standing for the checks
# and audit rows a real allocation does there (the real route's own gap is ~10-40 ms).
UNSAFE_DELAY_MS = "5"


@dataclass
class Trial:
    participant_ids: list[str]
    tokens: list[str]
    repeat_pid: str
    figures: dict = field(default_factory=dict)


@pytest.fixture
def trial(app, make_site, make_user) -> Trial:
    """One long stratum, its coordinator and investigator, and 121 consented participants.

    Everything is committed and the test's session closed before a server starts, so the
    test process holds no lock (on SQLite, no write transaction) during the load.
    """
    from datetime import date

    from trial.participants.services import register_participant

    make_site("S01", planned_enrollment=200)  # >= 240 slots per sex stratum
    lists.generate(make_user("unblinded_statistician")[0])
    coordinator, coordinator_token = make_user("coordinator", sites=["S01"])
    _, investigator_token = make_user("investigator", sites=["S01"])
    people = [
        register_participant(
            coordinator, site="S01", sex="F", year_of_birth=1980, consent_date=date(2026, 1, 15)
        )
        for _ in range(PARTICIPANTS + 1)
    ]
    for participant in people:  # screened and eligible: what randomization requires
        make_ready_in_process(coordinator, participant)
    pids = [participant.participant_id for participant in people]
    db.session.commit()
    length = len(
        db.session.scalars(
            select(RandomizationSlot.id).where(RandomizationSlot.stratum == STRATUM)
        ).all()
    )
    assert length >= PARTICIPANTS + 1
    db.session.remove()
    return Trial(
        participant_ids=pids[:PARTICIPANTS],
        tokens=[coordinator_token, investigator_token],
        repeat_pid=pids[-1],
    )


def fire(calls: list[tuple[str, str]], clients: int) -> list[tuple[str, int | None, object]]:
    """POST every (url, token) from ``clients`` threads released together by a barrier."""
    barrier = threading.Barrier(clients)
    pending = iter(calls)
    lock = threading.Lock()
    results = []

    def client():
        barrier.wait(timeout=60)
        while True:
            with lock:
                call = next(pending, None)
            if call is None:
                return
            url, token = call
            try:
                response = requests.post(
                    url, json={"eligibility_confirmed": True}, headers=bearer(token), timeout=120
                )
                try:
                    answer = response.json()
                except ValueError:
                    answer = response.text[:300]
                outcome = (url, response.status_code, answer)
            except requests.RequestException as exc:  # a dropped connection is a result too
                outcome = (url, None, repr(exc))
            with lock:
                results.append(outcome)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return results


def randomize_all(server, trial: Trial, route: str = "randomize"):
    calls = [
        (f"{server.api}/participants/{pid}/{route}", trial.tokens[n % len(trial.tokens)])
        for n, pid in enumerate(trial.participant_ids)
    ]
    started = time.monotonic()
    results = fire(calls, CLIENTS)
    return results, time.monotonic() - started


def stratum_slots() -> list[tuple[RandomizationSlot, str | None]]:
    db.session.remove()  # read what the server committed, nothing cached
    return db.session.execute(
        select(RandomizationSlot, Participant.participant_id)
        .outerjoin(Participant, Participant.id == RandomizationSlot.participant_id)
        .where(RandomizationSlot.stratum == STRATUM)
        .order_by(RandomizationSlot.sequence)
    ).all()


def check_allocations(results) -> tuple[list[str], dict]:
    """Compare what clients were told with the database; return problems and figures."""
    statuses = Counter(status for _, status, _ in results)
    told: dict[str, list[dict]] = {}
    for _, status, answer in results:
        if status == 201:
            told.setdefault(answer["participant_id"], []).append(answer)
    rows = stratum_slots()
    held = {pid: slot for slot, pid in rows if pid is not None}
    used = {slot.sequence for slot in held.values()}
    n_told = len(told)

    kits_told = Counter(a["kit_number"] for answers in told.values() for a in answers)
    numbers_told = Counter(a["randomization_number"] for answers in told.values() for a in answers)
    duplicates = sum(n - 1 for n in kits_told.values() if n > 1) + sum(
        n - 1 for n in numbers_told.values() if n > 1
    )
    mismatches = 0
    for pid, answers in told.items():
        slot = held.get(pid)
        for answer in answers:
            stored = (
                None
                if slot is None
                else {
                    "participant_id": pid,
                    "randomization_number": slot.randomization_number,
                    "kit_number": slot.kit_number,
                    "randomized_at": FixedTimestamp()._serialize(slot.allocated_at, None, None),
                }
            )
            mismatches += stored != answer
    expected = set(range(1, n_told + 1))
    gaps = len(expected - used)  # slots among the first N left unused
    beyond = len(used - expected)  # slots used past the first N (skips)
    db_numbers = [slot.randomization_number for slot in held.values()]
    figures = {
        "requests": len(results),
        "statuses": dict(statuses),
        "told_201": n_told,
        "slots_used": len(used),
        "duplicates": duplicates,
        "mismatches": mismatches,
        "gaps": gaps,
        "beyond_first_n": beyond,
        "untold_allocations": len(set(held) - set(told)),
    }
    problems = []
    if set(statuses) != {201}:
        failures = sorted({str(a)[:160] for _, s, a in results if s != 201})
        problems.append(f"statuses {dict(statuses)}, all must be 201: {failures[:3]}")
    if any(s is None or s >= 500 for s in statuses):
        problems.append("server errors or dropped connections")
    if duplicates:
        problems.append(f"{duplicates} kit or randomization number(s) told to two clients")
    if mismatches:
        problems.append(f"{mismatches} client(s) were told something the database does not hold")
    if gaps or beyond:
        problems.append(
            f"slots used are not exactly 1..{n_told}: {gaps} unused among them, "
            f"{beyond} beyond them"
        )
    if figures["untold_allocations"]:
        problems.append(f"{figures['untold_allocations']} allocation(s) no client was told of")
    if len(set(db_numbers)) != len(db_numbers):
        problems.append("randomization numbers repeat in the database")
    return problems, figures


def report(label: str, figures: dict, elapsed: float) -> None:
    print(
        f"\n[{label}] {figures['requests']} requests from {CLIENTS} clients through "
        f"{WORKERS} workers in {elapsed:.2f}s: statuses {figures['statuses']}; "
        f"slots used {figures['slots_used']}; duplicates {figures['duplicates']}; "
        f"mismatches {figures['mismatches']}; gaps {figures['gaps']} "
        f"(+{figures['beyond_first_n']} beyond N)"
    )


def test_concurrent_randomizations_take_exactly_the_first_n_slots(
    backend, database_url, tmp_path, trial
):
    with live_server(database_url, tmp_path / "server", workers=WORKERS) as server:
        assert len(server.worker_pids()) == WORKERS
        results, elapsed = randomize_all(server, trial)
        log = server.log()
    problems, figures = check_allocations(results)
    report(f"{backend} safe", figures, elapsed)
    assert not problems, "\n".join(problems)
    assert figures["told_201"] == PARTICIPANTS and figures["slots_used"] == PARTICIPANTS
    assert "Traceback" not in log and '" 500 ' not in log, log[-3000:]

    # The list still verifies (order followed in every stratum) and so does the audit chain.
    verified = lists.verify()
    assert verified.ok, verified.lines
    chain = verify_chain()
    assert chain.ok, chain.problem
    randomized = db.session.scalars(
        select(Participant.status).where(Participant.participant_id.in_(trial.participant_ids))
    ).all()
    assert Counter(randomized) == {"randomized": PARTICIPANTS}
    audited = Counter(
        db.session.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "randomize"))
    )
    assert audited == {pid: 4 for pid in trial.participant_ids}  # number, kit, time, eligibility


def test_concurrent_repeats_for_one_participant_give_one_allocation(
    backend, database_url, tmp_path, trial
):
    pid = trial.repeat_pid
    with live_server(database_url, tmp_path / "server", workers=WORKERS) as server:
        calls = [
            (f"{server.api}/participants/{pid}/randomize", trial.tokens[n % 2])
            for n in range(REPEATS)
        ]
        results = fire(calls, REPEATS)
    statuses = Counter(status for _, status, _ in results)
    print(f"\n[{backend} repeats] {REPEATS} concurrent requests for {pid}: {dict(statuses)}")
    assert statuses == {201: 1, 200: REPEATS - 1}, results
    bodies = {tuple(sorted(answer.items())) for _, _, answer in results}
    assert len(bodies) == 1, bodies
    rows = [(slot, holder) for slot, holder in stratum_slots() if holder is not None]
    assert [(slot.sequence, holder) for slot, holder in rows] == [(1, pid)]
    assert dict(bodies.pop())["kit_number"] == rows[0][0].kit_number
    audited = db.session.scalars(
        select(AuditEvent.field).where(
            AuditEvent.action == "randomize", AuditEvent.entity_id == pid
        )
    ).all()
    assert sorted(audited) == [
        "eligibility_confirmed",
        "kit_number",
        "randomization_number",
        "randomized_at",
    ]
    assert verify_chain().ok


def test_negative_control_read_then_write_allocation_is_caught(
    backend, database_url, tmp_path, trial
):
    """The same load against an unlocked read-then-write allocation fails the same checks."""
    with live_server(
        database_url,
        tmp_path / "server",
        workers=WORKERS,
        app=UNSAFE_APP,
        env={"UNSAFE_ALLOCATION_DELAY_MS": UNSAFE_DELAY_MS},
    ) as server:
        results, elapsed = randomize_all(server, trial, route="randomize-unsafe")
    problems, figures = check_allocations(results)
    report(f"{backend} UNSAFE read-then-write", figures, elapsed)
    print("  caught: " + "; ".join(problems))
    assert problems, "the checks did not notice an allocation without a lock"
    # Specifically the race: slots handed out twice or lost, or requests refused by the lock.
    assert (
        figures["duplicates"]
        or figures["mismatches"]
        or figures["gaps"]
        or figures["statuses"].get(201, 0) < PARTICIPANTS
    ), figures


def test_randomizations_beside_other_audited_writes_keep_one_chain(
    backend, database_url, tmp_path, trial
):
    """Randomizations take the allocation lock, then the audit chain head (on PostgreSQL in
    one statement, which may wait for the head while another request holds it); other
    writes take the head alone. With both kinds at once, every allocation is still exact
    and the chain verifies: the head a randomization waited for is read as its holder left
    it, never from before."""
    registrations = 60
    with live_server(database_url, tmp_path / "server", workers=WORKERS) as server:
        statuses: list[int | None] = []

        def register():
            for _ in range(registrations // 4):
                response = requests.post(
                    f"{server.api}/participants",
                    headers=bearer(trial.tokens[0]),
                    json={
                        "site": "S01",
                        "sex": "M",
                        "year_of_birth": 1970,
                        "consent_date": "2026-01-15",
                    },
                    timeout=120,
                )
                statuses.append(response.status_code)

        others = [threading.Thread(target=register) for _ in range(4)]
        for thread in others:
            thread.start()
        results, elapsed = randomize_all(server, trial)
        for thread in others:
            thread.join()
        log = server.log()
    problems, figures = check_allocations(results)
    report(f"{backend} beside registrations", figures, elapsed)
    assert not problems, "\n".join(problems)
    assert statuses == [201] * registrations
    assert "Traceback" not in log and '" 500 ' not in log, log[-3000:]
    chain = verify_chain()
    assert chain.ok, chain.problem
