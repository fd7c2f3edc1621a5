"""Runs every benchmark `bench/bench_*.py` in turn, each in its own Python process.

Each benchmark prints its own figures and the ratio against its in-run baseline; this runner
forwards `--quick`, shows each one's output as it comes, and ends with a summary. It exits
non-zero when any benchmark fails (or when there is none to run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover(only: list[str]) -> list[Path]:
    found = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        found = [path for path in found if any(name in path.stem for name in only)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small runs (forwarded to each)")
    parser.add_argument(
        "only", nargs="*", help="run only benchmarks whose name contains one of these"
    )
    args = parser.parse_args(argv)

    benches = discover(args.only)
    if not benches:
        print(f"no benchmarks bench_*.py found in {BENCH_DIR}", file=sys.stderr)
        return 1

    results: list[tuple[str, int, float]] = []
    for path in benches:
        command = [sys.executable, str(path), *(["--quick"] if args.quick else [])]
        print(f"=== {path.name} {'--quick' if args.quick else ''}".rstrip(), flush=True)
        started = time.perf_counter()
        returncode = subprocess.run(command, cwd=BENCH_DIR.parent, check=False).returncode
        elapsed = time.perf_counter() - started
        results.append((path.name, returncode, elapsed))
        print(
            f"=== {path.name}: {'ok' if returncode == 0 else f'FAILED (exit {returncode})'}"
            f" in {elapsed:.1f}s\n",
            flush=True,
        )

    print("=== summary")
    for name, returncode, elapsed in results:
        status = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
        print(f"  {name:<40} {elapsed:8.1f}s  {status}")
    failed = sum(1 for _, returncode, _ in results if returncode != 0)
    print(f"  {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
