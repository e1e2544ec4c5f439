"""Run every benchmark in bench/ and rewrite the summary table in bench/README.md.

    python bench/run_all.py [--quick] [--only expand,flow] [--timeout 1800] [--no-readme]

Discovery: every ``bench/bench_*.py``. A benchmark takes part by defining

    def measure(quick: bool = False) -> list[dict]:
        # one dict per target: {"metric": str, "value": str, "target": str, "met": bool | None}

(``met`` None: reported without a pass/fail target). Each benchmark runs in its
own process (they start emulators, SeaweedFS, Prefect servers and set env vars),
with a timeout; one that fails, times out or has no ``measure`` is listed as
such, and the others still run. ``--quick`` asks for smaller sizes (a sanity
run of a few minutes; the README's detailed sections keep the full runs).
The table between the ``run_all`` markers in bench/README.md is replaced; the
rest of the file is left alone. Exit 1 if a target is not met or a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = BENCH / "README.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"
MARK = "RUN_ALL_RESULT "

_CHILD = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(BENCH)!r}]
import importlib
module = importlib.import_module(sys.argv[1])
if not hasattr(module, "measure"):
    print({MARK!r} + json.dumps(None)); raise SystemExit(0)
rows = module.measure(quick=sys.argv[2] == "1")
print({MARK!r} + json.dumps(rows), flush=True)
"""


def discover() -> list[str]:
    """Module names of the benchmarks, sorted: bench_clip, bench_expand, ..."""
    return sorted(p.stem for p in BENCH.glob("bench_*.py"))


def run_one(name: str, *, quick: bool, timeout: float) -> tuple[list[dict] | None, str | None, float]:
    """(rows, problem, seconds): rows None with a problem when it could not be measured."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, name, "1" if quick else "0"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.monotonic() - started
    seconds = time.monotonic() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"failed (exit {proc.returncode}): {tail[0][:160]}", seconds
    rows = json.loads(lines[-1][len(MARK):])
    if rows is None:
        return None, "no measure() hook: run it by hand (see its section)", seconds
    return rows, None, seconds


def verdict(met: bool | None) -> str:
    return "met" if met else "-" if met is None else "**not met**"


def table(results: dict[str, tuple[list[dict] | None, str | None, float]], *, quick: bool) -> str:
    lines = [BEGIN, "",
             f"Last `python bench/run_all.py{' --quick' if quick else ''}`: "
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} CPU cores, "
             f"Python {platform.python_version()}{' (quick sizes: a sanity run, not the reference figures)' if quick else ''}.",
             "", "| benchmark | metric | measured | target | met |", "|---|---|---|---|---|"]
    for name, (rows, problem, seconds) in results.items():
        if rows is None:
            lines.append(f"| `{name}` | - | {problem} | - | **not run** |")
            continue
        for row in rows:
            lines.append(f"| `{name}` | {row['metric']} | {row['value']} | {row.get('target') or '-'} | "
                         f"{verdict(row.get('met'))} |")
    lines += ["", END]
    return "\n".join(lines)


def update_readme(block: str) -> None:
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:  # first run: the summary goes right after the introduction, before the first section
        head, sep, tail = text.partition("\n## ")
        text = head.rstrip() + "\n\n## Summary (bench/run_all.py)\n\n" + block + "\n" + sep + tail
    README.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    parser.add_argument("--only", default="", help="comma-separated names (expand or bench_expand)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument("--no-readme", action="store_true", help="print the table; leave README.md alone")
    args = parser.parse_args()
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only.split(",") if n}
    names = [n for n in discover() if not wanted or n in wanted]
    results = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, quick=args.quick, timeout=args.timeout)
        print(f"{name}: {results[name][2]:.0f} s {results[name][1] or ''}", file=sys.stderr, flush=True)
    block = table(results, quick=args.quick)
    print(block)
    if not args.no_readme:
        update_readme(block)
    failed = any(rows is None or any(r.get("met") is False for r in rows) for rows, _, _ in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
