"""A safety report of an earlier cut-off shows the data as it stood then (audit-trail
rewind, shared with the blinded bundle): later withdrawals, corrections and new
participants do not change it. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exports.snapshot import parse_cutoff
from reports.data import load_safety_data
from tests.capture_helpers import Trial, iso, today
from tests.test_adverse_events import body as ae_body
from tests.test_exports_bundle import now_cutoff
from trial.database import utcnow


def test_a_report_cutoff_undoes_later_changes(client, make_site, make_user, make_participant):
    trial = Trial(client, make_site, make_user, make_participant)
    p = trial.enrol()
    body = ae_body(onset_date=iso(today() - timedelta(days=3)))
    first = trial.post(f"/participants/{p.pid}/adverse-events", body)
    second = trial.post(f"/participants/{p.pid}/adverse-events", {**body, "term": "Dizziness"})
    assert first.status_code == second.status_code == 201
    cutoff = parse_cutoff(now_cutoff())

    assert (
        trial.post(
            f"/adverse-events/{first.json['id']}/entered-in-error", {"reason": "duplicate"}
        ).status_code
        == 200
    )
    assert (
        trial.patch(
            f"/adverse-events/{second.json['id']}", {"grade": 3, "reason": "worse than noted"}
        ).status_code
        == 200
    )
    trial.enrol()

    then = load_safety_data(cutoff)
    now = load_safety_data(utcnow())
    assert sorted((e.preferred_term, e.grade) for e in then.adverse_events) == [
        ("Dizziness", 2),
        ("Somnolence", 2),
    ]
    assert [(e.preferred_term, e.grade) for e in now.adverse_events] == [("Dizziness", 3)]
    assert len(then.participants) == 1 and len(now.participants) == 2


def test_the_closed_report_coding_is_secret_keyed_and_given_only_to_the_unblinded(
    app, runner, make_user
):
    from randomization.outputs import closed_report_coding
    from trial.protocol import current_protocol

    arms = current_protocol().arms
    coding = closed_report_coding()
    assert sorted(coding) == sorted(arms)
    # Keyed: across keys, both orders occur, so the protocol's order does not decode it.
    from cryptography.fernet import Fernet

    original, orders = app.config["ARM_KEY"], set()
    for _ in range(12):
        app.config["ARM_KEY"] = Fernet.generate_key().decode()
        orders.add(closed_report_coding())
    app.config["ARM_KEY"] = original
    assert len(orders) == 2  # 12 keys all giving one order: 1 chance in 2048
    assert closed_report_coding() == coding  # stable for a key: reports reproduce

    make_user("unblinded_statistician", username="unblinded")
    make_user("statistician", username="blinded")
    printed = runner.invoke(args=["reports", "arm-code", "--as", "unblinded"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines() == [f"{chr(65 + i)} = {arm}" for i, arm in enumerate(coding)]
    refused = runner.invoke(args=["reports", "arm-code", "--as", "blinded"])
    assert refused.exit_code != 0 and not any(arm in refused.output for arm in arms)


def test_a_cut_is_read_with_the_cyclic_collector_paused_and_restored(app, monkeypatch):
    """The bulk read runs without the cyclic collector's full-heap passes (they made the
    report's time grow faster than the trial), and the collector's state is restored
    afterwards, even when the read fails or the collector was already off."""
    import gc

    import exports.snapshot as snapshot

    seen = []
    real_load_cut = snapshot.load_cut

    def spy(cutoff):
        seen.append(gc.isenabled())
        return real_load_cut(cutoff)

    monkeypatch.setattr(snapshot, "load_cut", spy)
    assert gc.isenabled()
    load_safety_data(utcnow())
    assert seen == [False] and gc.isenabled()

    def broken(cutoff):
        raise RuntimeError("read failed")

    monkeypatch.setattr(snapshot, "load_cut", broken)
    with pytest.raises(RuntimeError):
        load_safety_data(utcnow())
    assert gc.isenabled()

    gc.disable()
    try:
        with snapshot.cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # an outer pause is not ended by an inner one
    finally:
        gc.enable()
