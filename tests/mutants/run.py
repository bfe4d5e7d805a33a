"""``make mutants``: plant each bug of the catalogue in turn and run the tests that should catch it.

    python tests/mutants/run.py                 # every mutant: killed or survived, one line each
    python tests/mutants/run.py --only NAME ... # some of them
    python tests/mutants/run.py --list          # the catalogue

A mutant is one small, realistic change to one file of ``nnx/`` (catalogue.py). It is applied
to the working tree, the tests named beside it run (``pytest -x``), and the file is put back
byte for byte, whatever happens (Ctrl-C included). Killed: the tests failed. Survived: they
passed, so no test pins that behaviour. Exit status 0 only when every mutant was killed.

Why not a mutation tool (mutmut, cosmic-ray): they generate thousands of mutants and run the
suite for each; the suite starts real processes and takes minutes, so that is hours on two
cores. A curated list of the bugs that matter, each with the tests that own the behaviour,
runs in minutes and grows with the code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalogue import MUTANTS


def apply(mutant) -> tuple[Path, bytes]:
    """Plant ``mutant``; returns (file, original bytes) to restore."""
    path = ROOT / mutant.file
    original = path.read_bytes()
    text = original.decode()
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"{mutant.name}: {mutant.file} holds the text to replace {count} times "
                         "(must be exactly once): update the catalogue")
    path.write_text(text.replace(mutant.old, mutant.new))
    return path, original


def run(mutant, timeout: float) -> tuple[str, float]:
    """'killed', 'survived' or 'error: ...' for one mutant, and the seconds it took."""
    started = time.monotonic()
    path, original = apply(mutant)
    try:
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                   *mutant.tests]
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False,
                                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        except subprocess.TimeoutExpired:
            return f"error: the tests ran over {timeout:.0f} s", time.monotonic() - started
    finally:
        path.write_bytes(original)
    if done.returncode == 1:
        return "killed", time.monotonic() - started
    if done.returncode == 0:
        return "survived", time.monotonic() - started
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    return f"error: pytest exit {done.returncode}: {tail[0]}", time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tests/mutants/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds one mutant's tests may take (a guard against a hang)")
    args = parser.parse_args(argv)
    chosen = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTANTS if m.name in args.only]
    width = max(len(m.name) for m in chosen)
    if args.list:
        for m in chosen:
            print(f"{m.name:<{width}}  {m.file}: {m.why}")
        return 0
    for m in chosen:  # every mutant applies before any test runs: a stale entry fails fast
        path, original = apply(m)
        path.write_bytes(original)
    results = {}
    for m in chosen:
        outcome, seconds = run(m, args.timeout)
        results[m.name] = outcome
        print(f"{outcome.split(':')[0]:<8} {m.name:<{width}} {seconds:6.1f} s  {m.why}"
              + (f"  [{outcome}]" if outcome.startswith("error") else ""), flush=True)
    killed = sum(o == "killed" for o in results.values())
    survived = [n for n, o in results.items() if o == "survived"]
    errors = [n for n, o in results.items() if o.startswith("error")]
    print(f"\n{killed} of {len(results)} mutants killed"
          + (f"; survived: {', '.join(survived)}" if survived else "")
          + (f"; errors: {', '.join(errors)}" if errors else ""))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
