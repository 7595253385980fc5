"""The core never reaches into the packages built on it (DESIGN §8).

``trial/`` is the core; ``randomization`` (the only code that reads an arm), ``exports`` and
``reports`` are built on it. If the core imported them, a page or a service of the core could
reach an arm or an unblinded artefact without passing their gates. The one allowed place is
the app factory's ``_register_api``, which imports them to register their blueprints.
"""

from __future__ import annotations

import ast
from pathlib import Path

TRIAL = Path(__file__).parents[1] / "trial"
BUILT_ON_THE_CORE = ("randomization", "exports", "reports")
# (module path relative to trial/, function) where importing them is the registration itself.
ALLOWED = {("__init__.py", "_register_api")}


def forbidden_imports(source: str, relative: str) -> list[str]:
    """Each import of a package built on the core in ``source``, outside ``ALLOWED``:
    ``import x``, ``from x... import``, and ``import_module("x...")``/``__import__("x...")``."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            callee = node.func
            called = getattr(callee, "attr", None) or getattr(callee, "id", None)
            if called in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names = [first.value]
        for name in names:
            if name.split(".")[0] in BUILT_ON_THE_CORE and (relative, function) not in ALLOWED:
                found.append(f"{relative}:{node.lineno} ({function or 'module'}) imports {name}")
        inner = node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else function
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), None)
    return found


def test_the_core_never_imports_randomization_exports_or_reports():
    modules = sorted(TRIAL.rglob("*.py"))
    assert len(modules) > 50  # the whole core is read, not an empty glob
    found = [
        problem
        for path in modules
        for problem in forbidden_imports(path.read_text(), str(path.relative_to(TRIAL)))
    ]
    assert found == []


def test_the_app_factory_is_where_they_are_registered():
    """The allowed place really holds the imports: the exception is not a dead letter."""
    source = (TRIAL / "__init__.py").read_text()
    assert forbidden_imports(source, "elsewhere.py") != []
    assert forbidden_imports(source, "__init__.py") == []


def test_negative_control_each_way_of_importing_is_caught():
    """Every form an import can take inside the core is found, at any depth."""
    planted = {
        "from randomization.services import allocation_of": "randomization.services",
        "import exports": "exports",
        "import reports.pdf as pdf": "reports.pdf",
        "def f():\n    from exports.bundle import build\n": "exports.bundle",
        "class C:\n    def m(self):\n        import randomization.crypto\n": "randomization.crypto",
        "import importlib\nimportlib.import_module('randomization.lists')": "randomization.lists",
        "__import__('exports')": "exports",
    }
    for source, name in planted.items():
        found = forbidden_imports(source, "visits/services.py")
        assert len(found) == 1 and found[0].endswith(f"imports {name}"), (source, found)
    # Relative imports and look-alike names are the core's own.
    assert forbidden_imports("from .randomization import x\nimport reporting", "x.py") == []
