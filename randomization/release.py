"""Release unblinded artefacts without leaving an oracle for the arms behind.

An artefact that depends on arms (the key file, the closed DSMB report, the list with arms, a
code-break answer) is released to an unblinded role, but traces of its release reach blinded
people: the audit trail (read by admins, data managers, monitors and site staff), the access
log, and the size of what crosses the network. Each of those traces must not be a function of
the arms that someone could recompute from guesses:

- **Digests.** A plain SHA-256 of the key file lets anyone who knows the participant ids try
  every arm assignment against it (18 arms in half a second). The audit trail therefore
  carries a keyed digest: HMAC-SHA256 under a key derived from ``ARM_KEY``, which only the
  server (and so the unblinded operations) holds. Whoever holds a released file verifies it
  with ``flask exports verify-release FILE``, which recomputes the keyed digest on the server
  and names the audit event that released those exact bytes.
- **Sizes.** Arm names differ in length ("baclofen", "placebo"), so every arm is padded to the
  longest name: JSON answers with insignificant whitespace after the value (parsers never see
  it), the key file with a last ``padding`` column of spaces. A closed report's content depends
  on per-arm counts in ways no padding can equalise exactly, so its PDF is padded with a
  comment to the next multiple of ``PDF_SIZE_QUANTUM``: sizes then differ only between reports
  that straddle a multiple, not by a few bytes per changed count.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable

from flask import Response, current_app

from randomization.crypto import require_arm_key

DIGEST_LABEL = b"trial-release-digest/v1"
PDF_SIZE_QUANTUM = 64 * 1024


def _digest_key() -> bytes:
    require_arm_key()
    return hmac.new(
        current_app.config["ARM_KEY"].encode("ascii"), DIGEST_LABEL, hashlib.sha256
    ).digest()


def release_digest(data: bytes) -> str:
    """The keyed digest of an unblinded artefact: verifiable on the server, useless to a
    blinded reader who tries arm assignments against it (they lack the key)."""
    return hmac.new(_digest_key(), data, hashlib.sha256).hexdigest()


def padded_json_response(payload, arm_paths: Iterable[str], arm_names: Iterable[str]) -> Response:
    """Serialise ``payload`` (a dict or a list of dicts) as JSON whose length does not depend
    on the arms it carries: every value under a key in ``arm_paths`` is followed by spaces up
    to the longest arm name's JSON length.

    Each arm value is swapped for a random placeholder before encoding, so the padding goes
    exactly where an arm was, whatever else the payload contains.
    """
    names = list(arm_names)
    width = max(len(json.dumps(name)) for name in names)
    keys = set(arm_paths)
    marker = f"arm-{secrets.token_hex(8)}-"
    arms: list[str] = []

    def swap(item: dict) -> dict:
        copy = dict(item)
        for key in keys & copy.keys():
            if copy[key] is not None:
                arms.append(copy[key])
                copy[key] = f"{marker}{len(arms) - 1}"
        return copy

    masked = [swap(item) for item in payload] if isinstance(payload, list) else swap(payload)
    text = json.dumps(masked, ensure_ascii=False)

    def restore(match: re.Match) -> str:
        encoded = json.dumps(arms[int(match.group(1))], ensure_ascii=False)
        return encoded + " " * (width - len(encoded))

    body = re.sub(rf'"{re.escape(marker)}(\d+)"', restore, text)
    return Response(body + "\n", mimetype="application/json")


def pad_pdf(pdf: bytes, quantum: int = PDF_SIZE_QUANTUM) -> bytes:
    """Grow a PDF to the next multiple of ``quantum`` bytes with a comment before its last
    cross-reference table.

    Objects before the table keep their offsets; only ``startxref`` moves, and is rewritten.
    Comments may stand wherever whitespace may, so every reader sees the same document.
    """
    match = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf)
    if match is None:
        raise ValueError("not a PDF with a final startxref")
    xref = int(match.group(1))
    head, table = pdf[:xref], pdf[xref : match.start()]
    target = max(quantum, math.ceil(len(pdf) / quantum) * quantum)
    filler = target - len(pdf)
    for _ in range(4):  # the new startxref may take a digit more: settle the filler
        padding = _comment_block(filler)
        result = head + padding + table + b"startxref\n%d\n%%%%EOF\n" % (xref + len(padding))
        if len(result) == target:
            return result
        filler += target - len(result)
        if filler < 0:  # already at a multiple, and the rewritten end is longer
            target, filler = target + quantum, filler + quantum
    raise AssertionError("PDF padding did not settle")  # pragma: no cover


def _comment_block(size: int) -> bytes:
    """``size`` bytes of PDF comment lines (``%`` then spaces, newline-terminated)."""
    if size <= 0:
        return b""
    if size == 1:
        return b"\n"
    lines, remaining = [], size
    while remaining > 0:
        width = min(remaining, 80)
        if width == 1:  # a lone byte cannot hold "%\n": widen the previous line
            lines[-1] = lines[-1][:-1] + b" \n"
        else:
            lines.append(b"%" + b" " * (width - 2) + b"\n")
        remaining -= width
    return b"".join(lines)
