"""Released unblinded artefacts leave no oracle for the arms (issue 22, items 1 and 3).

Each test plays the attacker with a blinded account (an admin reading the audit trail, an
operator reading the access log) and tries what the red team did: recompute a digest or a
size from guessed arms. Each has its negative control: with the old behaviour put back, the
same attack recovers the arms or the sizes differ.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from contextlib import contextmanager

import pytest

from randomization import code_break, crypto, minimization_claim, outputs, release
from randomization.outputs import allocation_key
from reports import pdf as report_pdf
from reports.data import resolve_cutoff
from tests.conftest import BACKENDS, bearer
from tests.demo_helpers import fixed_list_seed, fresh_app
from trial.auth.services import get_user_by_username
from trial.auth.tokens import issue_token
from trial.cli_support import system_actor
from trial.extensions import db

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    """A small demo trial (7 randomized participants), tokens for the roles the tests use."""
    from datetime import timedelta

    with fresh_app(request.param, request, tmp_path_factory.mktemp("release")) as application:
        with fixed_list_seed():
            result = application.test_cli_runner().invoke(
                args=["trial", "demo", "--participants", "8", "--seed", "3"]
            )
        assert result.exit_code == 0, result.output
        tokens = {}
        for name in ("admin", "unblinded_statistician", "dsmb", "data_manager"):
            tokens[name], _ = issue_token(
                system_actor(), get_user_by_username(name), label="test", ttl=timedelta(hours=1)
            )
        db.session.commit()
        time.sleep(1.05)  # a default cut-off is to the second: let the demo's second pass
        yield application, tokens


@pytest.fixture
def trial(demo):
    application, tokens = demo
    with application.app_context():
        yield application.test_client(), tokens
        db.session.remove()


def audit(client, token, action) -> list[dict]:
    response = client.get(f"/api/v1/audit?action={action}&limit=1000", headers=bearer(token))
    assert response.status_code == 200, response.json
    return response.json


def randomized(client, admin) -> list[tuple[str, str]]:
    """(participant id, randomization number) as an admin reads them from the trail."""
    events = audit(client, admin, "randomize")
    return sorted(
        (e["entity_id"], e["new_value"]) for e in events if e["field"] == "randomization_number"
    )


def detail_of(event: dict) -> dict:
    return event["detail"]


def true_arms() -> tuple[str, ...]:
    """The real allocation, in participant order, read the unblinded way (for checking)."""
    key = allocation_key(get_user_by_username("unblinded_statistician"))
    db.session.rollback()
    return tuple(arm for _pid, _num, arm in key)


def assignments(count: int, arms: tuple[str, ...]):
    return itertools.product(arms, repeat=count)


@contextmanager
def every_arm_flipped():
    """The same trial with every arm swapped (baclofen <-> placebo) where the randomization
    package decrypts them; the stored slots themselves are immutable (database triggers)."""
    real = crypto.decrypt_arm
    with pytest.MonkeyPatch.context() as patch:
        for module in (minimization_claim, outputs, code_break):
            if hasattr(module, "decrypt_arm"):
                patch.setattr(module, "decrypt_arm", lambda s, q, t: 1 - real(s, q, t))
        yield


# --- item 1: the audit trail is no oracle ------------------------------------------------


def crack_key_release(client, admin, arms) -> list[tuple[str, ...]]:
    """The red team's attack: every arm assignment whose key file matches what the trail
    says of the latest key release (a digest, a size)."""
    from exports.key import key_csv

    rows = randomized(client, admin)
    detail = detail_of(audit(client, admin, "export_key")[-1])
    hits = []
    for guess in assignments(len(rows), arms):
        data = key_csv([(pid, num, arm) for (pid, num), arm in zip(rows, guess, strict=True)], arms)
        digest = hashlib.sha256(data).hexdigest()
        if digest in detail.values() or len(data) in detail.values():
            hits.append(guess)
    return hits


def test_the_key_release_in_the_trail_cannot_be_matched_by_guessing_arms(trial, monkeypatch):
    client, tokens = trial
    arms = ("baclofen", "placebo")
    truth = tuple(
        arm for _pid, _num, arm in allocation_key(get_user_by_username("unblinded_statistician"))
    )
    db.session.rollback()
    response = client.get("/api/v1/exports/key", headers=bearer(tokens["unblinded_statistician"]))
    assert response.status_code == 200
    detail = detail_of(audit(client, tokens["admin"], "export_key")[-1])
    assert set(detail) == {"rows", "hmac_sha256"}
    assert crack_key_release(client, tokens["admin"], arms) == []
    # Control: with the plain SHA-256 in the trail (the old behaviour) the same attack finds
    # exactly the real allocation.
    monkeypatch.setattr(release, "release_digest", lambda data: hashlib.sha256(data).hexdigest())
    monkeypatch.setattr("exports.key.release_digest", release.release_digest)
    client.get("/api/v1/exports/key", headers=bearer(tokens["unblinded_statistician"]))
    assert crack_key_release(client, tokens["admin"], arms) == [truth]


def crack_closed_report(client, admin, monkeypatch) -> list[tuple[str, ...]]:
    """Render the closed report for every guess of the arms (a data manager holds all the
    blinded data and this code) and compare it with what the trail says of the release."""
    event = audit(client, admin, "report_safety")[-1]
    detail = detail_of(event)
    rows = randomized(client, admin)
    dsmb = get_user_by_username("dsmb")
    hits = []
    for guess in assignments(len(rows), ("baclofen", "placebo")):
        arm_of = {pid: arm for (pid, _num), arm in zip(rows, guess, strict=True)}
        monkeypatch.setattr(
            "randomization.outputs.arms_for_closed_report", lambda _actor, a=arm_of: a
        )
        pdf = report_pdf.render_safety_report(dsmb, "closed", "named", detail["cutoff"]).pdf
        db.session.rollback()
        if hashlib.sha256(pdf).hexdigest() in detail.values() or len(pdf) in detail.values():
            hits.append(guess)
    monkeypatch.undo()
    return hits


def test_the_closed_report_in_the_trail_cannot_be_matched_by_guessing_arms(trial, monkeypatch):
    client, tokens = trial
    dsmb = tokens["dsmb"]
    truth = tuple(
        arm for _pid, _num, arm in allocation_key(get_user_by_username("unblinded_statistician"))
    )
    db.session.rollback()
    cutoff = resolve_cutoff(None).isoformat()
    url = f"/api/v1/reports/safety?session=closed&arms=named&cutoff={cutoff.replace('+', '%2B')}"
    assert client.get(url, headers=bearer(dsmb)).status_code == 200
    detail = detail_of(audit(client, tokens["admin"], "report_safety")[-1])
    assert "sha256" not in detail and "bytes" not in detail and "hmac_sha256" in detail
    assert crack_closed_report(client, tokens["admin"], monkeypatch) == []
    # Control: the old event (plain SHA-256 and size) gives the allocation away.
    with monkeypatch.context() as patch:
        patch.setattr("reports.pdf.release_digest", lambda d: hashlib.sha256(d).hexdigest())
        assert client.get(url, headers=bearer(dsmb)).status_code == 200
    assert truth in crack_closed_report(client, tokens["admin"], monkeypatch)


def test_list_events_carry_no_plain_digest_of_the_list(trial):
    client, tokens = trial
    events = audit(client, tokens["admin"], "randomization_list_generated")
    assert events, "the demo generates its list"
    for event in events:
        detail = detail_of(event)
        assert "sha256" not in detail and "hmac_sha256" in detail


def test_verify_release_names_the_event_of_a_released_file(trial, tmp_path):
    client, tokens = trial
    response = client.get("/api/v1/exports/key", headers=bearer(tokens["unblinded_statistician"]))
    released = tmp_path / "key.csv"
    released.write_bytes(response.data)
    runner = client.application.test_cli_runner()
    result = runner.invoke(args=["exports", "verify-release", str(released)])
    assert result.exit_code == 0, result.output
    latest = audit(client, tokens["admin"], "export_key")[-1]["seq"]
    assert f"audit seq {latest}, export_key" in result.output
    # Control: one byte changed, and no release matches.
    released.write_bytes(response.data[:-3] + b"X\r\n")
    result = runner.invoke(args=["exports", "verify-release", str(released)])
    assert result.exit_code == 1 and "no release" in result.output


# --- item 3: sizes do not depend on arms ---------------------------------------------------


def test_the_key_file_and_the_list_have_the_same_length_whatever_the_arms(trial, monkeypatch):
    client, tokens = trial
    token = bearer(tokens["unblinded_statistician"])

    def answers():
        key = client.get("/api/v1/exports/key", headers=token)
        listing = client.get("/api/v1/randomization/list", headers=token)
        assert key.status_code == 200 and listing.status_code == 200
        return key.data, listing.data

    def lengths(pair):
        return tuple(len(body) for body in pair)

    before = answers()
    with every_arm_flipped():
        after = answers()
    assert before[0] != after[0] and before[1] != after[1]  # the arms did change
    assert lengths(before) == lengths(after)
    rows = after[0].decode().splitlines()
    assert len({len(row) for row in rows[1:]}) == 1
    # Control: unpadded (the old key file and list), the same flip changes both lengths.
    monkeypatch.setattr(
        "exports.key.key_csv",
        lambda rows, _arms: "".join(f"{p},{n},{a}\r\n" for p, n, a in rows).encode(),
    )
    monkeypatch.setattr(
        "randomization.views.padded_json_response",
        lambda payload, _paths, _names: client.application.json.response(payload),
    )
    unpadded = answers()
    with every_arm_flipped():
        assert lengths(answers()) != lengths(unpadded)


def test_the_closed_report_has_the_same_size_whatever_the_arms(trial, monkeypatch):
    _client, _tokens = trial
    dsmb = get_user_by_username("dsmb")
    cutoff = resolve_cutoff(None).isoformat()

    def closed():
        pdf = report_pdf.render_safety_report(dsmb, "closed", "named", cutoff).pdf
        db.session.rollback()
        return pdf

    first = closed()
    with every_arm_flipped():
        second = closed()
    assert first != second and len(first) == len(second)
    assert len(first) % release.PDF_SIZE_QUANTUM == 0
    # Control: without the padding the two reports differ in size.
    monkeypatch.setattr("reports.pdf.pad_pdf", lambda pdf: pdf)
    unpadded = closed()
    with every_arm_flipped():
        assert len(closed()) != len(unpadded)


def test_a_padded_pdf_reads_as_the_same_document(trial):
    import io

    import pdfplumber

    dsmb = get_user_by_username("dsmb")
    cutoff = resolve_cutoff(None).isoformat()
    report = report_pdf.render_safety_report(dsmb, "closed", "coded", cutoff).pdf
    db.session.rollback()
    with pdfplumber.open(io.BytesIO(report)) as document:
        pages = [page.extract_text() for page in document.pages]
    assert "CLOSED" in pages[0] and len(pages) > 3


@pytest.mark.parametrize("size", [1, 2, 79, 80, 81, 160, 4095])
def test_pdf_padding_hits_the_quantum_exactly(trial, size):
    dsmb = get_user_by_username("dsmb")
    report = report_pdf.render_safety_report(dsmb, "open", None, None).pdf
    db.session.rollback()
    quantum = len(report) + size
    padded = release.pad_pdf(report, quantum)
    assert len(padded) == quantum and padded.endswith(b"%%EOF\n")
    offset = int(padded.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert padded[offset : offset + 4] == b"xref"


def test_padded_json_has_one_length_for_every_arm(app):
    with app.test_request_context():
        lengths = {
            arm: len(
                release.padded_json_response(
                    {"participant_id": "S01-0001", "arm": arm}, ["arm"], ("baclofen", "placebo")
                ).data
            )
            for arm in ("baclofen", "placebo")
        }
        body = release.padded_json_response(
            [{"arm": "placebo"}, {"arm": None}], ["arm"], ("baclofen", "placebo")
        )
    assert len(set(lengths.values())) == 1
    assert json.loads(body.data) == [{"arm": "placebo"}, {"arm": None}]


def test_the_access_log_does_not_record_response_sizes():
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    def logged(config: Config) -> str:
        logger = Logger(config)
        response = SimpleNamespace(status="200 OK", sent=92, headers=[], response_length=92)
        environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/x", "SERVER_PROTOCOL": "HTTP/1.1"}
        request = SimpleNamespace(headers=[], method="POST", uri="/x", path="/x")
        atoms = logger.atoms(response, request, environ, __import__("datetime").timedelta(0))
        return config.access_log_format % atoms

    ours = Config()
    ours.set("access_log_format", _project_access_log_format())
    assert "92" not in logged(ours)
    # Control: gunicorn's default format logs the size, which gave the arm away.
    assert "92" in logged(Config())


def _project_access_log_format() -> str:
    from pathlib import Path

    namespace: dict = {}
    source = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
    exec(compile(source.read_text(), str(source), "exec"), namespace)  # noqa: S102
    return namespace["access_log_format"]
