"""Sandboxed programs/s through code_accuracy's path (run_many), per jail, and against an older design.

Each program is MBPP-sized (a dozen lines, a helper and the entry point) with 3 asserts, half of them
right. `--baseline REV` also times rewards/sandbox.py as it was at git revision REV (with that revision's
program and judge files, where it had them), loaded from `git show` into a module of its own, in the same
run and on the same programs; rounds alternate (new, old, old, new...) so load from other jobs on a shared
machine falls on both alike, and the table shows medians.

    python bench/sandbox_throughput.py                        # every jail that works here
    python bench/sandbox_throughput.py --baseline f73bf6d --programs 200 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = '''
def _digits(n):
    out = []
    while n:
        n, d = divmod(n, 10)
        out.append(d)
    return out or [0]

def sum_digits(n):
    """The sum of the decimal digits of n (n >= 0)."""
    total = 0
    for d in _digits(abs(n)):
        total += d
    return total{wrong}
'''
TESTS = "assert sum_digits(345) == 12\nassert sum_digits(12) == 3\nassert sum_digits(97) == 16"


def programs(n: int) -> tuple[list[str], list[str]]:
    codes = [PROGRAM.format(wrong=" + 1" if i % 2 else "") for i in range(n)]
    return codes, [TESTS] * n


def load_baseline(rev: str):
    """rewards/sandbox.py at `rev`, as its own module (it only needs ladder.errors), beside that revision's
    sandbox_program.py and sandbox_judge.py where it had them (it reads them from its own folder)."""
    root = Path(__file__).resolve().parent.parent
    folder = Path(tempfile.mkdtemp(prefix="ladder-bench-"))
    for name in ("sandbox_program.py", "sandbox_judge.py"):
        shown = subprocess.run(["git", "show", f"{rev}:rewards/{name}"], cwd=root, capture_output=True, text=True)
        if shown.returncode == 0:
            (folder / name).write_text(shown.stdout)
    source = subprocess.run(["git", "show", f"{rev}:rewards/sandbox.py"], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    path = folder / "sandbox_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ladder_sandbox_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rate(module, kind: str, codes, tests, workers: int) -> float:
    start = time.perf_counter()
    results = module.run_many(codes, tests, max_workers=workers, jail_kind=kind, timeout=5.0, memory_mb=512)
    seconds = time.perf_counter() - start
    passed = [r.ok for r in results]
    expected = [i % 2 == 0 for i in range(len(codes))]
    if passed != expected:
        bad = next(r for r, e in zip(results, expected) if r.ok != e)
        raise SystemExit(f"{module.__name__} {kind}: wrong verdicts ({bad.reason}: {bad.stderr[-300:]})")
    return len(codes) / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--programs", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--jails", default="bwrap,setuid")
    p.add_argument("--baseline", default=None, help="git revision whose rewards/sandbox.py to time as well")
    args = p.parse_args()

    from ladder.rewards import sandbox

    designs = [("this tree", sandbox)]
    if args.baseline:
        designs.append((f"rewards/sandbox.py at {args.baseline}", load_baseline(args.baseline)))
    codes, tests = programs(args.programs)
    rows = []
    for kind in args.jails.split(","):
        if sandbox.probe(kind) is not None:
            print(f"{kind}: skipped ({sandbox.probe(kind)})")
            continue
        for module in {id(m): m for _, m in designs}.values():
            module.run_many(codes[:4], tests[:4], max_workers=args.workers, jail_kind=kind)  # warm up
        rates = {name: [] for name, _ in designs}
        for r in range(args.rounds):
            for name, module in designs if r % 2 == 0 else designs[::-1]:
                rates[name].append(rate(module, kind, codes, tests, args.workers))
        for name, _ in designs:
            rows.append((name, kind, statistics.median(rates[name]), min(rates[name]), max(rates[name])))
    print(f"\n{args.programs} programs x {args.rounds} rounds, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| design | jail | programs/s (median) | min | max |")
    print("|---|---|---|---|---|")
    for name, kind, median, low, high in rows:
        print(f"| {name} | {kind} | {median:.1f} | {low:.1f} | {high:.1f} |")


if __name__ == "__main__":
    main()
