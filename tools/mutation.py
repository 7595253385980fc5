"""Mutation testing of the safety-critical modules, one module at a time (``make mutation``).

For each module named in ``mutation.toml`` the script lays a fresh scratch directory under
``.mutation/<name>/`` (a copy of the module's package, ``tests/`` and ``pyproject.toml``, and a
``setup.cfg`` holding mutmut's settings for that module alone), runs ``mutmut run`` there with
one worker process, on SQLite only (``TEST_DATABASE_URL`` removed from the environment), and
prints the module's score and every survivor with its diff. The working tree is never
touched: mutmut writes its mutated copies under the scratch directory.

Score = killed / (mutants - listed equivalents). A surviving mutant is "equivalent" only if
``mutation.toml`` lists it (by mutant name *and* the text of its mutated line, so a listing
that no longer matches the code stops excusing anything) with the reason it cannot change
behaviour. Exit status 1 when a module scores below its goal.

    .venv/bin/python tools/mutation.py                  # every module
    .venv/bin/python tools/mutation.py chain counting   # some modules
    .venv/bin/python tools/mutation.py drbg --tests tests/test_randomization_generator.py

mutmut 3 mutates code inside functions and methods only (not module-level constants such as
``HASHED_COLUMNS`` or ``SPECIAL_INTEREST``); the tests pin those constants directly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"
KILLED = {"killed", "timeout", "caught by type check"}


@dataclass
class Module:
    name: str
    path: str
    tests: list[str]
    goal: float
    timeout_multiplier: float
    equivalent: dict[str, tuple[str, str]]  # mutant -> (mutated line, why)


def load_config(path: Path) -> tuple[list[str], list[Module]]:
    data = tomllib.loads(path.read_text("utf-8"))
    pytest_args = data.get("pytest_args", [])
    modules = []
    for entry in data["module"]:
        equivalent = {
            e["mutant"]: (e["line"].strip(), e["why"]) for e in entry.get("equivalent", [])
        }
        modules.append(
            Module(
                entry["name"],
                entry["path"],
                entry["tests"],
                float(entry.get("goal", data.get("goal", 0.9))),
                float(entry.get("timeout_multiplier", data.get("timeout_multiplier", 2.0))),
                equivalent,
            )
        )
    return pytest_args, modules


def cfg_list(values: list[str]) -> str:
    """A setup.cfg list as mutmut reads it: one value per line."""
    return "\n" + "\n".join(f"    {value}" for value in values)


PACKAGES = ("trial", "randomization", "reports", "exports")  # copied whole, one file mutated
ALSO_COPY = ("config.py", "wsgi.py", "migrations")


def lay_out(module: Module, tests: list[str], pytest_args: list[str]) -> Path:
    """A scratch copy of the project for one module: everything the tests import comes from
    the copy (mutmut puts its ``mutants/`` directory first on the path)."""
    work = SCRATCH / module.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in (*PACKAGES, *ALSO_COPY, "tests"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, work / name)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths = {cfg_list(list(PACKAGES))}\n"
        f"only_mutate = {module.path}\n"
        f"also_copy = {cfg_list(list(ALSO_COPY))}\n"
        f"pytest_add_cli_args_test_selection = {cfg_list(tests)}\n"
        f"pytest_add_cli_args = {cfg_list(pytest_args)}\n"
        "use_git_change_detection = false\n"
        # A mutant that loops forever (say, a rejection limit of 0) is stopped after this many
        # times the time its tests took unmutated (times two; mutmut's default is 15).
        f"timeout_multiplier = {module.timeout_multiplier}\n",
        "utf-8",
    )
    return work


def mutmut(work: Path, *args: str, quiet: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [str(MUTMUT), *args], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0 and not quiet:
        sys.stdout.write(result.stdout[-4000:])
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"mutmut {' '.join(args)} failed in {work}")
    return result.stdout


def mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff (what the mutant wrote)."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def run_module(module: Module, tests: list[str], pytest_args: list[str]) -> float:
    print(f"=== {module.name}: {module.path}")
    print(f"    tests: {' '.join(tests)}")
    started = time.monotonic()
    work = lay_out(module, tests, pytest_args)
    mutmut(work, "run", "--max-children", "1")
    statuses = {}
    for line in mutmut(work, "results", "--all", "true").splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match:
            statuses[match[1]] = match[2].strip()
    survivors, equivalents = [], []
    for name, status in sorted(statuses.items(), key=lambda item: natural(item[0])):
        if status in KILLED:
            continue
        diff = mutmut(work, "show", name, quiet=True)
        listed = module.equivalent.get(name)
        if listed and listed[0] == mutated_line(diff):
            equivalents.append((name, status, listed[1], diff))
        else:
            survivors.append((name, status, diff))
    total = len(statuses)
    killed = sum(1 for s in statuses.values() if s in KILLED)
    timeouts = sorted((n for n, s in statuses.items() if s == "timeout"), key=natural)
    for name in timeouts:  # counted as killed: shown so a reader can see each one loops
        print(f"--- killed by timeout {name}:")
        print(body_of(mutmut(work, "show", name, quiet=True)))
    counted = total - len(equivalents)
    score = killed / counted if counted else 1.0
    for name, status, why, _diff in equivalents:
        print(f"--- equivalent {name} ({status}): {why}")
    for name, status, diff in survivors:
        print(f"--- SURVIVOR {name} ({status})")
        print(body_of(diff))
    stale = sorted(set(module.equivalent) - {name for name, *_ in equivalents})
    for name in stale:
        print(f"--- note: listed equivalent {name} did not survive or no longer matches")
    verdict = "met" if score >= module.goal else "NOT met"
    print(
        f"SCORE {module.name}: {killed}/{counted} non-equivalent mutants killed = {score:.1%} "
        f"({total} mutants, {len(timeouts)} of the kills by timeout, {len(equivalents)} "
        f"equivalent, {len(survivors)} surviving; "
        f"goal {module.goal:.0%} {verdict}; {time.monotonic() - started:.0f} s)"
    )
    return score


def body_of(diff: str) -> str:
    lines = [line for line in diff.splitlines() if line.startswith(("-", "+", "@"))]
    return "\n".join("    " + line for line in lines if not line.startswith(("---", "+++")))


def natural(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="module names from the config (default all)")
    parser.add_argument("--config", type=Path, default=ROOT / "mutation.toml")
    parser.add_argument("--tests", nargs="+", help="run these test files instead of the config's")
    args = parser.parse_args()
    pytest_args, modules = load_config(args.config)
    known = {m.name for m in modules}
    unknown = set(args.modules) - known
    if unknown:
        parser.error(f"unknown module(s) {sorted(unknown)}; known: {sorted(known)}")
    chosen = [m for m in modules if not args.modules or m.name in args.modules]
    scores = {}
    for module in chosen:
        scores[module.name] = run_module(module, args.tests or module.tests, pytest_args)
    print("=== summary")
    for module in chosen:
        print(f"    {module.name:<10} {scores[module.name]:.1%}  (goal {module.goal:.0%})")
    return 0 if all(scores[m.name] >= m.goal for m in chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main())
