#!/usr/bin/env python3
"""Prints the median of every criterion benchmark of the last run, and its ratio to a baseline.

    python3 scripts/bench-medians.py BASELINE [CRITERION_DIR]

BASELINE is a benchmark id such as `raw_limit`; CRITERION_DIR defaults to target/criterion.
Medians come from criterion's estimates.json (`median.point_estimate`, nanoseconds).
"""

import json
import pathlib
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    baseline = sys.argv[1]
    root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "target/criterion")
    medians = {}
    for estimates in sorted(root.glob("**/new/estimates.json")):
        bench_id = str(estimates.parent.parent.relative_to(root))
        medians[bench_id] = json.loads(estimates.read_text())["median"]["point_estimate"]
    if baseline not in medians:
        sys.exit(f"no benchmark {baseline!r} under {root}; run `cargo bench` first")
    base = medians[baseline]
    print(f"{'benchmark':<40} {'median':>12} {'vs ' + baseline:>16}")
    for bench_id, median in medians.items():
        print(f"{bench_id:<40} {median / 1000:>9.2f} µs {median / base:>15.2f}x")


if __name__ == "__main__":
    main()
