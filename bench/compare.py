"""Run one benchmark against an older commit and the working tree, alternately, in one run.

A refactoring's speed guardrail ("at most 25% slower than before") is only meaningful when old
and new are timed on the same machine at the same time: this machine is shared and its speed
drifts by more than the differences looked for. The script checks out ``--old`` into a
temporary git worktree (and ``--new`` too, when given; by default the new side is the
working tree as it is), then runs the benchmark script from each tree in ABBA order (old, new,
new, old, ...), so a drift in the machine's speed falls on both alike, and prints each run's
output under its label, followed by the lines of every run that carry figures (``--grep``).

Each tree's benchmark imports its own code: the scripts put their own tree first on
``sys.path`` and start gunicorn and flask with their tree as the working directory.

    .venv/bin/python bench/compare.py --old ae9aca2 visits.py --db sqlite --requests 100
    .venv/bin/python bench/compare.py --old ae9aca2 --rounds 2 export.py --sizes 2000

Not a test: the figures depend on the machine. Exit status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lines worth seeing side by side: throughput, latencies, ratios, seconds.
DEFAULT_GREP = r"^\s*(health|visits|randomi|server|bundle)\b|ratio|req/s|p50|p95|slower|faster"


def run(tree: Path, script: str, args: list[str]) -> tuple[int, str]:
    """Run ``tree/bench/script`` with ``args``; return its exit status and output."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", help="the commit to compare (default: the working tree as it is)")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds (2 runs of each)")
    parser.add_argument("--grep", default=DEFAULT_GREP, help="regex of the lines summarised")
    parser.add_argument("script", help="a script under bench/, e.g. visits.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    options = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    trees = {"old": scratch / "old", "new": scratch / "new" if options.new else ROOT}
    for label, commit in (("old", options.old), ("new", options.new)):
        if commit:
            add = ["worktree", "add", "--detach", "--quiet", str(trees[label]), commit]
            subprocess.run(["git", "-C", str(ROOT), *add], check=True)
    order = [label for _ in range(options.rounds) for label in ("old", "new", "new", "old")]
    outputs: list[tuple[str, int, str]] = []
    try:
        for number, label in enumerate(order, 1):
            print(f"=== run {number}/{len(order)}: {label} ({trees[label]})", flush=True)
            status, output = run(trees[label], options.script, options.args)
            print(output, flush=True)
            outputs.append((label, status, output))
    finally:
        for tree in trees.values():
            if tree != ROOT:
                remove = ["worktree", "remove", "--force", str(tree)]
                subprocess.run(["git", "-C", str(ROOT), *remove], check=False)
        shutil.rmtree(scratch, ignore_errors=True)

    pattern = re.compile(options.grep)
    new = options.new or "working tree"
    print(
        f"=== summary: {options.script} {' '.join(options.args)} (old = {options.old}, new = {new})"
    )
    for label, status, output in outputs:
        lines = [
            line
            for line in output.splitlines()
            if pattern.search(line) and not line.startswith("INFO")
        ]
        print(f"--- {label} (exit {status})")
        for line in lines:
            print(f"    {line}")
    return 1 if any(status for _, status, _ in outputs) else 0


if __name__ == "__main__":
    sys.exit(main())
