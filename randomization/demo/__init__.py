"""The demo's randomization step: generate the list, screen, randomize, and follow everyone.

It lives here because the course of a randomized participant depends on their arm, and only
this package reads arms. Arms are read the sanctioned way, through ``allocation_key`` as the
unblinded statistician, and that release is audited like any other.

Reproducibility: the list seed is cryptographic (never taken from ``--seed``), so two runs
allocate differently. Everything else comes from ``--seed``: each participant's draws come
from streams seeded by the demo seed and their participant id (``profile.participant_rng``),
arm-free ones (profile, screening, baseline drinking) apart from arm-dependent ones (the
course). So a participant given the same arm gets the same data on every run, whatever the
others got, and a run with the same list (e.g. an imported one) is the same trial. Dates are
relative to the day the demo runs.

Writes go through the bulk paths of the services (``register_participants``,
``randomize_many``, ``record_visits``, ``create_records``), which store and audit
each record field by field exactly as the single-record services do (the test suite loads a
demo both ways and compares); serious AEs go through the safety service itself, which opens
their expedited reports. Participants are randomized in the order of their (past) day 0, each
dated then; the audit rows carry the time of the load.
"""

from __future__ import annotations

from randomization import lists, outputs, services
from randomization.bulk import randomize_many
from randomization.demo import writer
from randomization.demo.course import simulate_course
from randomization.demo.profile import draw_profile, screening_outcome, screening_visit
from randomization.demo.writer import write_courses, write_screening, write_visits
from trial.audit.services import record_event
from trial.participants.services import site_today
from trial.protocol import current_protocol

CHUNK = 200  # participants simulated and written together (bounds memory)


def randomize_demo_participants(rng, context) -> None:
    users = context["users"]
    statistician = users["unblinded_statistician"]
    protocol = current_protocol()
    lists.generate(statistician)
    base = rng.getrandbits(64)
    today = {}
    for participant in context["participants"]:
        if participant.site_code not in today:
            today[participant.site_code] = site_today(participant.site)
    profiles = [
        draw_profile(base, p, today[p.site_code], protocol) for p in context["participants"]
    ]

    def coordinator(site: str):
        return users[f"coordinator.{site.lower()}"]

    write_visits(users, [(p.participant, screening_visit(p, protocol)) for p in profiles])
    write_screening(users, [(p.participant, *screening_outcome(p, protocol)) for p in profiles])

    eligible = sorted(
        (p for p in profiles if p.randomized_at is not None), key=lambda p: (p.randomized_at, p.pid)
    )
    allocations = [(coordinator(p.participant.site_code), p.pid, p.randomized_at) for p in eligible]
    if writer.BULK:
        randomize_many(allocations)
    else:
        for actor, participant_id, at in allocations:
            services.randomize(actor, participant_id, eligibility_confirmed=True, at=at)
    if not eligible:
        return
    key = outputs.allocation_key(statistician)
    record_event(
        statistician,
        "unblinded_read",
        entity_type="randomization_key",
        detail={"purpose": "demo: simulate the arm-dependent course", "rows": len(key)},
    )
    arms = {pid: arm for pid, _number, arm in key}
    by_id = sorted(eligible, key=lambda p: p.pid)
    for start in range(0, len(by_id), CHUNK):
        chunk = by_id[start : start + CHUNK]
        courses = [
            (p, simulate_course(p, arms[p.pid], today[p.participant.site_code], protocol))
            for p in chunk
        ]
        write_courses(users, courses)
