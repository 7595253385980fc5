"""Load the protocol file and refuse to start on any bad setting, naming it.

The file is read as TOML, checked by ``trial.protocol.schemas.ProtocolSchema`` (every problem
in one message) and turned into the frozen ``trial.protocol.Protocol`` the app keeps.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import marshmallow as ma

from trial.errors import ConfigurationError
from trial.protocol import Criterion, Protocol, VisitDefinition
from trial.protocol.schemas import ProtocolSchema


def _flatten(messages, prefix="") -> list[str]:
    out = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "(file)"
            out.extend(_flatten(value, name))
    elif isinstance(messages, list):
        for message in messages:
            out.extend(_flatten(message, prefix))
    else:
        out.append(f"{prefix}: {messages}")
    return out


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file; raise ConfigurationError naming each bad setting."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"protocol file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"protocol file {path} is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"protocol file {path} is not valid TOML: {exc}") from exc
    try:
        data = ProtocolSchema().load(raw)
    except ma.ValidationError as exc:
        problems = "; ".join(sorted(_flatten(exc.messages)))
        raise ConfigurationError(f"protocol file {path} has bad settings: {problems}") from exc

    arms, rand = data["arms"], data["randomization"]
    return Protocol(
        trial_code=data["trial"]["code"],
        title=data["trial"]["title"],
        planned_enrollment_per_site=data["trial"]["planned_enrollment_per_site"],
        min_age=data["eligibility"]["min_age"],
        max_age=data["eligibility"]["max_age"],
        eligibility_criteria=tuple(
            Criterion(**criterion) for criterion in data["eligibility"]["criteria"]
        ),
        arms=tuple(arms["names"]),
        ratio=tuple(arms["ratio"]),
        randomization_method=rand["method"],
        strata=tuple(rand["strata"]),
        block_sizes=tuple(m * sum(arms["ratio"]) for m in rand["block_size_multiples"]),
        list_margin=rand["list_margin"],
        low_remaining_warning=rand["low_remaining_warning"],
        minimization_factors=tuple(rand["minimization"]["factors"]),
        minimization_probability_best=rand["minimization"]["probability_best"],
        kit_digits=data["kits"]["digits"],
        dosing=dict(data["dosing"]),
        standard_drink_grams=data["drinking"]["standard_drink_grams"],
        heavy_drinking_threshold=dict(data["drinking"]["heavy_drinking_threshold"]),
        max_drinks_per_day=data["drinking"]["max_drinks_per_day"],
        baseline_days=data["drinking"]["baseline_days"],
        who_risk_levels=tuple(dict(level) for level in data["drinking"]["who_risk_levels"]),
        visits=tuple(
            VisitDefinition(**{**visit, "forms": tuple(visit["forms"])}) for visit in data["visits"]
        ),
        edit_checks=data["edit_checks"],
        source=str(path),
        heavy_drinking_by=data["drinking"]["heavy_drinking_by"],
        heavy_drinking_grams=(
            dict(data["drinking"]["heavy_drinking_grams"])
            if data["drinking"]["heavy_drinking_grams"]
            else None
        ),
        standard_drink_grams_by_site=dict(data["drinking"]["standard_drink_grams_by_site"]),
        min_assessed_days=data["drinking"]["min_assessed_days"],
        min_assessed_share=data["drinking"]["min_assessed_share"],
    )
