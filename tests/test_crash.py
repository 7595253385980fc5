"""Crash test: a write the client was told is saved survives SIGKILL of the server processes.

Client threads submit participants and visits (a screening visit with its drinking calendar,
OCDS, CIWA-Ar, vitals and labs: some 70 rows in one transaction) through gunicorn on loopback,
and every round ends in a SIGKILL of the whole gunicorn process group, aimed at the moment
right after a client received a 201 (the worst moment for a write that is acknowledged but
not yet durable). On PostgreSQL the test runs its own throwaway cluster (``tests/pg_cluster.py``)
and in most rounds SIGKILLs the postmaster and every backend too, then lets PostgreSQL run
crash recovery. After each round, with nothing running, the database is checked:

- every acknowledged submission is there, with the content the client sent and its audit
  rows (lost otherwise);
- nothing is half-written: every participant, visit and form row matches a submission in
  full and has exactly its audit ``create`` rows, and no audit row points at a missing row
  (a submission that committed but whose answer the client never saw is fine, if whole);
- the audit hash chain verifies; at the end ``flask audit verify`` runs as a command.

A negative control runs the PostgreSQL test on a cluster with ``synchronous_commit=off`` (the
app started with ``ALLOW_UNSAFE_DURABILITY=1``), crashing the server every round (at least
three rounds, on until a loss shows, at most twelve): the same checks then report acknowledged
writes lost, so the test can fail. There is no SQLite negative control that a process kill
can show: with ``synchronous=OFF`` a commit still reaches the OS page cache, which survives
the death of the process; only an OS crash or power cut loses it, which a test cannot cause.
The figures (acknowledged, lost, half-written) are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from config import PROJECT_ROOT
from tests.conftest import TEST_DATABASE_URL, bearer, make_config
from tests.live_server import live_server, server_environment
from tests.pg_cluster import PgCluster, unavailable_reason

pytestmark = pytest.mark.slow

CLIENTS = 6
WORKERS = 4
ROUNDS = 10
PG_SERVER_CRASH_ROUNDS = frozenset({0, 2, 4, 5, 7, 9})  # 6 of the 10 rounds
# The control crashes the database in every round, at least CONTROL_MIN_ROUNDS times and on
# until a loss shows, at most CONTROL_MAX_ROUNDS (one crash loses an acknowledged write about
# half the time: the WAL writer is often quick enough even with synchronous_commit=off).
CONTROL_MIN_ROUNDS = 3
CONTROL_MAX_ROUNDS = 12
SEED = int(os.environ.get("CRASH_SEED", "20261121"))

PARTICIPANT_AUDIT_FIELDS = 5  # site, sex, year_of_birth, consent_date, status
CIWA_ITEMS = (
    "nausea_vomiting",
    "tremor",
    "paroxysmal_sweats",
    "anxiety",
    "agitation",
    "tactile_disturbances",
    "auditory_disturbances",
    "visual_disturbances",
    "headache",
    "orientation",
)
OCDS_ITEMS = tuple(f"item_{n}" for n in range(1, 15))
VITALS = ("systolic_bp", "diastolic_bp", "heart_rate", "weight_kg")
LABS = (("GGT", "U/L", 55.0), ("ALT", "U/L", 45.0), ("AST", "U/L", 40.0))
# Audit create rows per record, written out here rather than read from the models.
FORM_TABLES = {
    "visits": ("visit", 5),
    "drinking_days": ("drinking_day", 2),
    "ocds_assessments": ("ocds", 14),
    "ciwa_assessments": ("ciwa", 10),
    "vitals": ("vitals", 4),
    "lab_results": ("lab_result", 4),
}
CALENDAR_DAYS = 7


# --- what the clients send ----------------------------------------------------------------


def registration(n: int) -> dict:
    """Submission ``n``'s registration, distinct for every n below 27,000 (age 20 to 64)."""
    consent = date.today() - timedelta(days=30 + (n // 90) % 300)
    return {
        "site": "S01",
        "sex": "FM"[(n // 45) % 2],
        "year_of_birth": consent.year - 20 - n % 45,
        "consent_date": consent.isoformat(),
    }


def visit_body(n: int) -> dict:
    """Submission ``n``'s screening visit, ten days after consent, with every form."""
    visit_date = date.fromisoformat(registration(n)["consent_date"]) + timedelta(days=10)
    return {
        "visit_code": "screening",
        "visit_date": visit_date.isoformat(),
        "status": "completed",
        "drinking": [
            {
                "date": (visit_date - timedelta(days=k)).isoformat(),
                "standard_drinks": float((n + k) % 9),
            }
            for k in range(CALENDAR_DAYS, 0, -1)
        ],
        "ocds": {item: (n + i) % 5 for i, item in enumerate(OCDS_ITEMS)},
        "ciwa": {item: (n + i) % 4 for i, item in enumerate(CIWA_ITEMS)},
        "vitals": {
            "systolic_bp": 110 + n % 40,
            "diastolic_bp": 70 + n % 15,
            "heart_rate": 55 + n % 40,
            "weight_kg": 60 + (n % 400) / 10,
        },
        "labs": [
            {"test": test, "value": float(10 + (n * (i + 3)) % 90), "unit": unit,
             "upper_limit_normal": uln}
            for i, (test, unit, uln) in enumerate(LABS)
        ],
    }  # fmt: skip


def participant_key(body: dict) -> tuple:
    return (body["site"], body["sex"], body["year_of_birth"], body["consent_date"])


def visit_key(body: dict) -> tuple:
    """A visit as comparable content (what the body asks for; what the database holds)."""
    return (
        body["visit_code"],
        body["visit_date"],
        tuple(sorted((d["date"], float(d["standard_drinks"])) for d in body["drinking"])),
        tuple(body["ocds"][item] for item in OCDS_ITEMS),
        tuple(body["ciwa"][item] for item in CIWA_ITEMS),
        tuple(float(body["vitals"][name]) for name in VITALS),
        tuple(
            sorted(
                (lab["test"], float(lab["value"]), lab["unit"], float(lab["upper_limit_normal"]))
                for lab in body["labs"]
            )
        ),
    )


# --- the clients ---------------------------------------------------------------------------


@dataclass
class Submissions:
    """Everything the clients sent and were told, across rounds."""

    token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_n: int = 0
    attempted_participants: set = field(default_factory=set)
    attempted_visits: set = field(default_factory=set)
    acked_participants: list = field(default_factory=list)  # (n, participant_id)
    acked_visits: list = field(default_factory=list)  # (n, participant_id, visit id)
    statuses: Counter = field(default_factory=Counter)
    unexpected: list = field(default_factory=list)  # 4xx answers: a bug in the test or app
    lost: set = field(default_factory=set)  # ("participant" | "visit", n)
    half_written: list = field(default_factory=list)  # as found by the latest check
    stored_unacknowledged: int = 0
    first_acknowledgement: threading.Event = field(default_factory=threading.Event)
    armed: threading.Event = field(default_factory=threading.Event)
    acknowledged_after_arming: threading.Event = field(default_factory=threading.Event)

    @property
    def acknowledged(self) -> int:
        return len(self.acked_participants) + len(self.acked_visits)

    @property
    def attempted(self) -> int:
        return len(self.attempted_participants) + len(self.attempted_visits)

    def _take(self) -> int:
        with self.lock:
            self.next_n += 1
            return self.next_n

    def _post(self, url: str, body: dict) -> tuple[int | None, dict | None]:
        try:
            response = requests.post(url, json=body, headers=bearer(self.token), timeout=60)
        except requests.RequestException:
            with self.lock:
                self.statuses["connection error"] += 1
            return None, None
        with self.lock:
            self.statuses[response.status_code] += 1
        if response.status_code == 201:
            return 201, response.json()
        if 400 <= response.status_code < 500:
            with self.lock:
                self.unexpected.append((url, response.status_code, response.text[:300]))
        return response.status_code, None

    def _acknowledged(self) -> None:
        self.first_acknowledgement.set()
        if self.armed.is_set():
            self.acknowledged_after_arming.set()

    def client(self, api: str, stop: threading.Event) -> None:
        while not stop.is_set():
            n = self._take()
            with self.lock:
                self.attempted_participants.add(n)
            status, answer = self._post(f"{api}/participants", registration(n))
            if status is None:
                return  # the server is gone: this client's round is over
            if status != 201:
                continue
            pid = answer["participant_id"]
            with self.lock:
                self.acked_participants.append((n, pid))
            self._acknowledged()
            if stop.is_set():
                return
            with self.lock:
                self.attempted_visits.add(n)
            status, answer = self._post(f"{api}/participants/{pid}/visits", visit_body(n))
            if status is None:
                return
            if status == 201:
                with self.lock:
                    self.acked_visits.append((n, pid, answer["id"]))
                self._acknowledged()

    def round(self, api: str, seconds: float, crash) -> float:
        """Load for ``seconds`` from the first answer (fresh workers start slowly), then
        crash right after the next acknowledgement."""
        stop = threading.Event()
        self.first_acknowledgement.clear()
        self.armed.clear()
        self.acknowledged_after_arming.clear()
        threads = [
            threading.Thread(target=self.client, args=(api, stop), daemon=True)
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        self.first_acknowledgement.wait(timeout=60)
        time.sleep(seconds)
        self.armed.set()
        self.acknowledged_after_arming.wait(timeout=10)
        started = time.monotonic()
        crash()
        crash_seconds = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
            assert not thread.is_alive(), "a client thread hung after the crash"
        return crash_seconds


# --- the check -----------------------------------------------------------------------------


def _rows(connection, sql: str) -> list:
    return connection.execute(text(sql)).all()


def check_database(app, subs: Submissions) -> list[str]:
    """Compare the database with what the clients were told; return readable problems.

    Adds to ``subs.lost`` (a set: a loss seen in several rounds counts once) and sets
    ``subs.half_written`` and ``subs.stored_unacknowledged`` from what is stored now.
    """
    from trial.audit.services import verify_chain
    from trial.database import reading
    from trial.extensions import db

    problems = []
    db.session.remove()
    db.engine.dispose()
    with db.engine.connect() as connection:
        participants = {
            pid: (site, sex, yob, str(consent))
            for pid, site, sex, yob, consent in _rows(
                connection,
                "SELECT p.participant_id, s.code, p.sex, p.year_of_birth, p.consent_date "
                "FROM participants p JOIN sites s ON s.id = p.site_id",
            )
        }
        audited = Counter()
        for entity_type, entity_id, count in _rows(
            connection,
            "SELECT entity_type, entity_id, count(*) FROM audit_events WHERE action = 'create' "
            "AND entity_type IN ('participant', 'visit', 'drinking_day', 'ocds', 'ciwa', "
            "'vitals', 'lab_result') GROUP BY entity_type, entity_id",
        ):
            audited[(entity_type, entity_id)] = count
        visits = {
            vid: [pid, code, str(day), [], None, None, None, []]
            for vid, pid, code, day in _rows(
                connection,
                "SELECT v.id, p.participant_id, v.visit_code, v.visit_date FROM visits v "
                "JOIN participants p ON p.id = v.participant_id",
            )
        }
        existing = {("visit", str(vid)) for vid in visits}
        existing |= {("participant", pid) for pid in participants}
        orphans = []

        def attach(table, columns, slot, many):
            entity, _ = FORM_TABLES[table]
            for row in _rows(connection, f"SELECT id, visit_id, {columns} FROM {table}"):
                existing.add((entity, str(row[0])))
                visit = visits.get(row[1])
                if visit is None:
                    orphans.append(f"{table} {row[0]} belongs to no visit")
                    continue
                values = tuple(row[2:])
                if many:
                    visit[slot].append(values)
                else:
                    visit[slot] = values

        attach("drinking_days", "day, standard_drinks", 3, True)
        attach("ocds_assessments", ", ".join(OCDS_ITEMS), 4, False)
        attach("ciwa_assessments", ", ".join(CIWA_ITEMS), 5, False)
        attach("vitals", ", ".join(VITALS), 6, False)
        attach("lab_results", "test, value, unit, upper_limit_normal", 7, True)
        form_ids = {
            entity: {str(row[0]) for row in _rows(connection, f"SELECT id FROM {table}")}
            for table, (entity, _) in FORM_TABLES.items()
        }
        connection.rollback()

    def stored_visit_key(visit):
        _, code, day, drinking, ocds, ciwa, vitals, labs = visit
        return (
            code,
            day,
            tuple(sorted((str(d), float(v)) for d, v in drinking)),
            tuple(ocds) if ocds else None,
            tuple(ciwa) if ciwa else None,
            tuple(float(v) for v in vitals) if vitals else None,
            tuple(sorted((t, float(v), u, float(uln)) for t, v, u, uln in labs)),
        )

    # Acknowledged writes must be there, whole and as sent.
    for n, pid in subs.acked_participants:
        expected = participant_key(registration(n))
        if participants.get(pid) != expected or audited[("participant", pid)] == 0:
            subs.lost.add(("participant", n))
    for n, pid, vid in subs.acked_visits:
        visit = visits.get(vid)
        if (
            visit is None
            or visit[0] != pid
            or participants.get(pid) != participant_key(registration(n))
            or stored_visit_key(visit) != visit_key(visit_body(n))
        ):
            subs.lost.add(("visit", n))

    # Everything stored is a whole submission with its audit rows, acknowledged or not.
    by_content = {participant_key(registration(n)): n for n in subs.attempted_participants}
    acked = {("participant", n) for n, _ in subs.acked_participants}
    acked |= {("visit", n) for n, _, _ in subs.acked_visits}
    unacknowledged = 0
    half = []
    pid_n = {}
    for pid, content in participants.items():
        n = by_content.get(content)
        pid_n[pid] = n
        if n is None:
            half.append(f"participant {pid} {content} matches no submission")
        elif audited[("participant", pid)] != PARTICIPANT_AUDIT_FIELDS:
            half.append(f"participant {pid} has {audited[('participant', pid)]} audit rows")
        elif ("participant", n) not in acked:
            unacknowledged += 1
    for vid, visit in visits.items():
        n = pid_n.get(visit[0])
        if n is None or n not in subs.attempted_visits:
            half.append(f"visit {vid} of {visit[0]} matches no submission")
            continue
        if stored_visit_key(visit) != visit_key(visit_body(n)):
            half.append(f"visit {vid} of {visit[0]} is not the visit sent: {visit}")
        elif ("visit", n) not in acked:
            unacknowledged += 1
    for table, (entity, fields) in FORM_TABLES.items():
        for record_id in form_ids[entity]:
            if audited[(entity, record_id)] != fields:
                half.append(
                    f"{table} {record_id} has {audited[(entity, record_id)]} audit rows, "
                    f"not {fields}"
                )
    for key in audited:
        if key not in existing:
            half.append(f"audit rows for {key} whose record does not exist")
    half += orphans
    subs.stored_unacknowledged = unacknowledged
    subs.half_written = half
    if half:
        problems.append(f"{len(half)} half-written: " + "; ".join(half[:5]))

    with reading():
        chain = verify_chain()
    db.session.remove()
    db.engine.dispose()
    if not chain.ok:
        problems.append(f"audit chain broken at {chain.broken_seq}: {chain.problem}")
    if subs.lost:
        problems.append(f"{len(subs.lost)} acknowledged submissions lost: {sorted(subs.lost)[:8]}")
    return problems


# --- set-up and the crash loop --------------------------------------------------------------


def preforked_app():
    """``wsgi``'s app for ``gunicorn --preload``: built once in the master, then forked.

    Each worker importing the app itself costs seconds of CPU per worker per restart (pandas,
    pyarrow, reportlab), which on two cores would eat the test's time budget. Requests are
    served exactly as without ``--preload``; the pool is emptied before the fork so that no
    database connection is shared between processes (each worker opens its own).
    """
    from trial import create_app
    from trial.extensions import db

    app = create_app()
    with app.app_context():
        db.engine.dispose()
    return app


def migrate_and_seed(database_url: str, instance: Path, **overrides):
    """Migrate, add site S01 and a coordinator; return (app, token). The app stays open."""
    from flask_migrate import upgrade

    from trial import create_app
    from trial.auth import services as auth
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor
    from trial.extensions import db
    from trial.sites.services import create_site

    app = create_app(make_config(database_url, instance, **overrides))
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        actor = system_actor()
        create_site(actor, code="S01", name="Crash site", timezone="UTC", planned_enrollment=50)
        user = auth.create_user(
            actor, username="crash.coordinator", role="coordinator", site_codes=["S01"]
        )
        token, _ = issue_token(actor, user, label="crash", ttl=timedelta(hours=2))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return app, token


def audit_verify_command(database_url: str, instance: Path, env: dict | None = None) -> str:
    """Run ``flask --app wsgi audit verify`` as an operator would; return its output."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "audit", "verify"],
        cwd=PROJECT_ROOT,
        env=server_environment(database_url, instance, env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def crash_rounds(
    app,
    subs: Submissions,
    database_url: str,
    tmp_path: Path,
    *,
    rounds: int,
    cluster: PgCluster | None = None,
    server_crash_rounds=frozenset(),
    env: dict | None = None,
    min_rounds_until_loss: int | None = None,
) -> tuple[int, list[str]]:
    """Run the rounds (checking after each); return how many ran and the last problems.

    With ``min_rounds_until_loss``, stop after that many rounds as soon as a loss was seen.
    """
    rng = random.Random(SEED)
    problems = []
    number = 0
    for number in range(rounds):
        if min_rounds_until_loss is not None and number >= min_rounds_until_loss and subs.lost:
            return number, problems
        crash_postgres = cluster is not None and number in server_crash_rounds
        with live_server(
            database_url,
            tmp_path / "server",
            workers=WORKERS,
            env=env,
            timeout=120,
            app="tests.test_crash:preforked_app()",
            gunicorn_args=("--preload",),
        ) as server:

            def crash(server=server, crash_postgres=crash_postgres):
                if crash_postgres:
                    cluster.crash()  # the database first: commits in flight die with it
                server.kill()

            subs.round(server.api, rng.uniform(2.0, 3.5), crash)
        if crash_postgres:
            cluster.start()  # crash recovery
        with app.app_context():
            problems = check_database(app, subs)
        print(
            f"  round {number + 1}: {'gunicorn + PostgreSQL' if crash_postgres else 'gunicorn'} "
            f"killed; {subs.acknowledged} acknowledged so far, {len(subs.lost)} lost, "
            f"{len(subs.half_written)} half-written"
        )
    return number + 1, problems


def report(label: str, subs: Submissions, rounds: int, crashes: int, seconds: float) -> str:
    return (
        f"{label}: {rounds} rounds ({crashes} database-server crashes) in {seconds:.0f}s; "
        f"{subs.attempted} submissions sent, {subs.acknowledged} acknowledged "
        f"({len(subs.acked_participants)} participants, {len(subs.acked_visits)} visits), "
        f"{len(subs.lost)} acknowledged lost, {len(subs.half_written)} half-written, "
        f"{subs.stored_unacknowledged} committed but unacknowledged (whole); "
        f"answers {dict(subs.statuses)}"
    )


# --- the tests ---------------------------------------------------------------------------


def test_sqlite_acknowledged_writes_survive_sigkill(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'trial.db'}"
    app, token = migrate_and_seed(database_url, tmp_path / "instance")
    subs = Submissions(token)
    started = time.monotonic()
    _, problems = crash_rounds(app, subs, database_url, tmp_path, rounds=ROUNDS)
    print(report("SQLite", subs, ROUNDS, 0, time.monotonic() - started))
    assert not subs.unexpected, subs.unexpected[:5]
    assert subs.acknowledged >= 100, "too little load to mean anything"
    assert not problems, problems
    assert "audit chain intact" in audit_verify_command(database_url, tmp_path / "instance")


pg_cluster_needed = pytest.mark.skipif(
    not TEST_DATABASE_URL or unavailable_reason() is not None,
    reason=(
        "PostgreSQL crash tests run with TEST_DATABASE_URL set (as in CI), on a throwaway "
        f"cluster; {unavailable_reason() or 'TEST_DATABASE_URL is not set'}"
    ),
)


@pytest.fixture
def make_cluster():
    clusters = []

    def factory(**settings):
        cluster = PgCluster(settings=settings)
        clusters.append(cluster)
        cluster.__enter__()
        return cluster

    yield factory
    for cluster in clusters:
        cluster.cleanup()


@pg_cluster_needed
def test_postgresql_acknowledged_writes_survive_sigkill_of_app_and_server(tmp_path, make_cluster):
    cluster = make_cluster()
    assert (cluster.show("fsync"), cluster.show("synchronous_commit")) == ("on", "on")
    database_url = cluster.create_database("trial")
    app, token = migrate_and_seed(database_url, tmp_path / "instance")
    subs = Submissions(token)
    started = time.monotonic()
    _, problems = crash_rounds(
        app,
        subs,
        database_url,
        tmp_path,
        rounds=ROUNDS,
        cluster=cluster,
        server_crash_rounds=PG_SERVER_CRASH_ROUNDS,
    )
    print(report("PostgreSQL", subs, ROUNDS, cluster.crashes, time.monotonic() - started))
    assert cluster.crashes == len(PG_SERVER_CRASH_ROUNDS) >= 5
    assert not subs.unexpected, subs.unexpected[:5]
    assert subs.acknowledged >= 100, "too little load to mean anything"
    assert not problems, problems
    assert "audit chain intact" in audit_verify_command(database_url, tmp_path / "instance")


@pg_cluster_needed
def test_negative_control_synchronous_commit_off_loses_acknowledged_writes(tmp_path, make_cluster):
    """The same load and checks on a cluster that acknowledges commits before they are
    durable: killing the server loses acknowledged writes, and the checks say so."""
    cluster = make_cluster(
        synchronous_commit="off",
        wal_writer_delay="10s",  # the longest: the WAL writer flushes rarely
        wal_writer_flush_after="1GB",
        wal_buffers="64MB",  # backends never have to write WAL out to make room
    )
    assert cluster.show("synchronous_commit") == "off"
    unsafe = {"ALLOW_UNSAFE_DURABILITY": "1"}
    database_url = cluster.create_database("trial")
    app, token = migrate_and_seed(database_url, tmp_path / "instance", ALLOW_UNSAFE_DURABILITY=True)
    subs = Submissions(token)
    started = time.monotonic()
    rounds, problems = crash_rounds(
        app,
        subs,
        database_url,
        tmp_path,
        rounds=CONTROL_MAX_ROUNDS,
        cluster=cluster,
        server_crash_rounds=frozenset(range(CONTROL_MAX_ROUNDS)),
        env=unsafe,
        min_rounds_until_loss=CONTROL_MIN_ROUNDS,
    )
    print(
        report(
            "negative control (synchronous_commit=off)",
            subs,
            rounds,
            cluster.crashes,
            time.monotonic() - started,
        )
    )
    assert not subs.unexpected, subs.unexpected[:5]
    assert subs.lost, f"the checks did not notice lost writes: {problems}"
    assert any("acknowledged submissions lost" in p for p in problems), problems
    # Asynchronous commit loses whole transactions, never parts of one.
    assert not subs.half_written, problems
