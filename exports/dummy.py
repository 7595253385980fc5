"""Dummy arms: random labels with the trial's strata and ratio, so analysis code can be
written before unblinding. They come from a declared seed, never from the real list."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from exports.context import ParticipantFacts
from randomization.generator import generate_stratum
from randomization.strata import stratum_key
from trial.protocol import Protocol

COLUMN = "dummy_arm_not_real"
LABEL = "DUMMY arm - NOT the real allocation"
WARNING = (
    "The column dummy_arm_not_real holds DUMMY arms drawn at random from the declared seed "
    "with the trial's strata and allocation ratio. They are NOT the real allocation and "
    "carry no information about it; use them only to write and test analysis code."
)
MAX_SEED = 2**63 - 1


def dummy_label(index: int) -> str:
    return f"DUMMY_{chr(ord('A') + index)}"


def dummy_arms(protocol: Protocol, participants: list[ParticipantFacts], seed: int) -> dict:
    """Participant row id -> dummy label, for every participant randomized at the cut-off.

    Permuted blocks per stratum (the protocol's block sizes and ratio) from a stream keyed
    by the seed alone; participants take them in order of randomization number.
    """
    key = hashlib.sha256(f"dummy-arms|{seed}".encode()).digest()
    strata: dict[str, list[ParticipantFacts]] = defaultdict(list)
    for p in participants:
        if p.randomization_number is not None:
            strata[stratum_key(protocol, site=p.site, sex=p.sex)].append(p)
    labels = {}
    for stratum, members in sorted(strata.items()):
        members.sort(key=lambda p: p.randomization_number)
        slots = generate_stratum(key, stratum, len(members), protocol.ratio, protocol.block_sizes)
        for p, (_, _, arm) in zip(members, slots, strict=False):
            labels[p.row_id] = dummy_label(arm)
    return labels
