"""Time the default `train_prune` (the digits demo) from a cold cache, TensorFlow start-up included.

    python benchmarks/demo.py            # one cold run; goal: < 120 s on 2 CPU cores
    python benchmarks/demo.py --runs=3   # median of three cold runs

Each run gets a fresh, empty --run_root, so every model is trained, pruned and attacked from scratch. A warm
re-run (all stages cached) is timed too: it shows the cost of start-up plus loading the cached result.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

GOAL_SECONDS = 120.0


def timed_run(run_root: str, extra) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tfprune_mia.bin.train_prune", f"--run_root={run_root}", *extra],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"train_prune failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="number of cold runs (median reported)")
    parser.add_argument("extra", nargs="*", help="extra train_prune flags (after --)")
    args = parser.parse_args()
    cold = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as run_root:
            seconds, table = timed_run(run_root, args.extra)
            cold.append(seconds)
            print(f"cold run {index + 1}: {seconds:.1f} s")
            if index == 0:
                warm, _ = timed_run(run_root, args.extra)
                print(table)
    median = statistics.median(cold)
    print(f"cpu cores: {os.cpu_count()}")
    print(f"train_prune demo, cold cache: median {median:.1f} s over {len(cold)} run(s) "
          f"(goal < {GOAL_SECONDS:.0f} s: {'met' if median < GOAL_SECONDS else 'NOT met'})")
    print(f"train_prune demo, warm cache (all stages reused): {warm:.1f} s")


if __name__ == "__main__":
    main()
