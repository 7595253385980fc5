"""Encrypt arms and seeds at rest; the key comes from configuration (``ARM_KEY``).

Each arm ciphertext is bound to its slot (stratum and sequence are inside the plaintext and
checked on decryption), so ciphertexts cannot be swapped between slots unnoticed.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from trial.errors import TrialError


class ArmKeyUnavailable(TrialError):
    status, code = 503, "arm_key_unavailable"


class ArmKeyMismatch(TrialError):
    status, code = 500, "arm_key_mismatch"


def _fernet() -> Fernet:
    key = current_app.config.get("ARM_KEY")
    if not key:
        raise ArmKeyUnavailable(
            "The arm encryption key (ARM_KEY) is not configured on this server, so unblinded "
            "operations are refused. Set ARM_KEY in the environment or instance/secrets/arm_key."
        )
    try:
        return Fernet(key)
    except (ValueError, TypeError) as exc:
        raise ArmKeyUnavailable("ARM_KEY is not a valid Fernet key.") from exc


def require_arm_key() -> None:
    _fernet()


def encrypt_arm(stratum: str, sequence: int, arm: int) -> str:
    payload = json.dumps(
        {"stratum": stratum, "sequence": sequence, "arm": arm},
        sort_keys=True,
        separators=(",", ":"),
    )
    return _fernet().encrypt(payload.encode()).decode("ascii")


def decrypt_arm(stratum: str, sequence: int, token: str) -> int:
    try:
        payload = json.loads(_fernet().decrypt(token.encode("ascii")))
    except InvalidToken as exc:
        raise ArmKeyMismatch(
            "An arm could not be decrypted: wrong ARM_KEY or altered data."
        ) from exc
    if payload["stratum"] != stratum or payload["sequence"] != sequence:
        raise ArmKeyMismatch(f"The arm of slot {stratum} #{sequence} belongs to another slot.")
    return int(payload["arm"])


def encrypt_seed(seed: bytes) -> str:
    return _fernet().encrypt(seed).decode("ascii")


def decrypt_seed(token: str) -> bytes:
    try:
        return _fernet().decrypt(token.encode("ascii"))
    except InvalidToken as exc:
        raise ArmKeyMismatch("The list seed could not be decrypted: wrong ARM_KEY.") from exc


def encrypt_json(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return _fernet().encrypt(text.encode()).decode("ascii")


def decrypt_json(token: str) -> dict:
    try:
        return json.loads(_fernet().decrypt(token.encode("ascii")))
    except InvalidToken as exc:
        raise ArmKeyMismatch("A record could not be decrypted: wrong ARM_KEY.") from exc
