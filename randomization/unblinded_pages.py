"""The unblinded statistician's pages: the list's summary per stratum with the design's
predictability, the notices, the randomization key and the closed report's arm code.

Every route is for the unblinded statistician alone (any other role: 403 before anything is
read or written). Each view does what its API or command does, with the same audit: the
summary and the notices are read as ``GET /api/v1/randomization/summary`` and ``/notices``
read them (no event, they hold no arm); the key is released by the API's own function
(``exports.download.key_response``: one ``export_key`` event per release) and the arm code
by the command's (``reports.arm_code.release_arm_code``: one ``report_arm_code`` event).
The two releases are POST forms with the CSRF token, so no link, prefetch or reload of a
page releases anything; the overview itself names no arm.
"""

from __future__ import annotations

import functools
import random

from flask import g, render_template

from randomization import lists, outputs
from randomization.predictability import expected_fixed_block_share, simulate_guess_share
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.extensions import db
from trial.protocol import current_protocol
from trial.web.blueprint import PageBlueprint

bp = PageBlueprint("unblinded_pages", __name__, template_folder="templates")

# The predictability figure: the command's number of simulated allocations, from a fixed
# seed so the page shows the same figure at every view (about 0.1 s, once per process).
SIMULATIONS = 20_000
SIMULATION_SEED = 0


@functools.cache
def _predictability(block_sizes: tuple[int, ...], ratio: tuple[int, ...]) -> float:
    """``lists.summary``'s figure for the design (what ``randomization summary`` prints),
    kept per design: it depends on the block sizes and ratio alone, not on the list."""
    rng = random.Random(SIMULATION_SEED)
    return simulate_guess_share(block_sizes, ratio, SIMULATIONS, rng)


@bp.route("/randomization", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN)
def overview():
    """Summary per stratum, predictability, notices, and the two release forms."""
    protocol = current_protocol()
    rows = lists.summary(g.current_user, simulations=0)
    share = _predictability(protocol.block_sizes, protocol.ratio) if rows else None
    fixed = (
        [(size, expected_fixed_block_share(size)) for size in protocol.block_sizes]
        if len(protocol.ratio) == 2 and protocol.ratio[0] == protocol.ratio[1]
        else []
    )
    totals = {key: sum(row[key] for row in rows) for key in ("slots", "used", "remaining")}
    return render_template(
        "unblinded/overview.html",
        title="Randomization",
        rows=rows,
        totals=totals,
        share=share,
        simulations=SIMULATIONS,
        fixed=fixed,
        block_sizes=protocol.block_sizes,
        notices=outputs.list_notices(g.current_user),
    )


@bp.route("/randomization/key", methods=["POST"])
@allow(Role.UNBLINDED_STATISTICIAN)
def key():
    """Download the key (participant -> arm) as GET /api/v1/exports/key does; audited."""
    from exports.download import key_response

    return key_response(g.current_user)


@bp.route("/randomization/arm-code", methods=["POST"])
@allow(Role.UNBLINDED_STATISTICIAN)
def arm_code():
    """Show which arm the closed report calls A, B, ... (as ``flask reports arm-code``)."""
    from reports.arm_code import release_arm_code

    pairs = release_arm_code(g.current_user)
    db.session.commit()
    return render_template("unblinded/arm_code.html", title="Closed report arm code", pairs=pairs)
