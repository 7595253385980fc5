"""Negative controls: a function of a module rewritten with one textual change, as a mutant.

``mutant(module, "name", "old", "new")`` compiles the function's source with ``old`` replaced
by ``new`` (exactly once) in the module's own namespace and returns it, for a test to patch in
with ``monkeypatch.setattr(module, "name", ...)`` and show that its check then fails.

Under ``make mutation`` (mutmut sets MUTANT_UNDER_TEST) the negative controls are skipped:
there the modules are mutmut's rewritten copies, and the score should count what the real
tests catch, not what the controls of those tests do.
"""

from __future__ import annotations

import inspect
import os
import textwrap

import pytest

UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ
negative_control = pytest.mark.skipif(UNDER_MUTMUT, reason="negative control; not a mutant's test")


def mutant(module, name: str, old: str, new: str):
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {name}"
    namespace: dict = {}
    exec(compile(source.replace(old, new), f"<mutant of {name}>", "exec"), vars(module), namespace)
    return namespace[name]
