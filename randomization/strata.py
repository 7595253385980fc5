"""Name strata from participant attributes, as the protocol's strata factors say."""

from __future__ import annotations

from trial.protocol import SEXES, Protocol


def stratum_key(protocol: Protocol, *, site: str, sex: str) -> str:
    values = {"site": site, "sex": sex}
    return "|".join(f"{factor}={values[factor]}" for factor in protocol.strata) or "all"


def all_strata(protocol: Protocol, site_codes: list[str]) -> list[str]:
    keys = {stratum_key(protocol, site=code, sex=sex) for code in site_codes for sex in SEXES}
    return sorted(keys)
