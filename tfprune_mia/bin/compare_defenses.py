"""Print the defense-comparison table (mean ± std over seeds) of finished train_prune runs.

  compare_defenses --results='runs/fashion_mnist-n6000-small_cnn-seed*/results/*.json'
"""
from __future__ import annotations

import glob
import sys

from absl import flags

from tfprune_mia.bin.runner import run_main
from tfprune_mia.errors import ConfigError

flags.DEFINE_string("results", "runs/*/results/*.json", "Glob of result JSON files written by train_prune.")
flags.DEFINE_string("primary_attack", "samia", "Attack shown in its own columns; the best other one is the baseline.")
FLAGS = flags.FLAGS


def main() -> int:
    from tfprune_mia.audit.results import ExperimentResult
    from tfprune_mia.audit.tables import defense_comparison_table

    # Re-runs of the attack binary (<key>.attack-<time>.json) would count a seed twice.
    paths = sorted(p for p in glob.glob(FLAGS.results) if ".attack-" not in p)
    reports = [ExperimentResult.load(path) for path in paths]
    if not reports:
        raise ConfigError(f"no train_prune result matches --results={FLAGS.results!r}; check the run directory")
    print(defense_comparison_table(reports, primary=FLAGS.primary_attack))
    print(f"\n{len(reports)} result files", file=sys.stderr)
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
