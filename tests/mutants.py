"""Negative controls: a function of a module rewritten with one textual change, as a mutant.

``mutant(module, "name", "old", "new")`` compiles the function's source with ``old`` replaced
by ``new`` (exactly once) in the module's own namespace and returns it, for a test to patch in
with ``monkeypatch.setattr(module, "name", ...)`` and show that its check then fails.
"""

from __future__ import annotations

import inspect
import textwrap


def mutant(module, name: str, old: str, new: str):
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {name}"
    namespace: dict = {}
    exec(compile(source.replace(old, new), f"<mutant of {name}>", "exec"), vars(module), namespace)
    return namespace[name]
