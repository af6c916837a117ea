"""Re-run membership inference attacks on the models train_prune cached, retraining nothing.

  attack --attacks=lira_offline,rmia_offline,conf   # same model/pruning flags as the train_prune run
  attack --attacks=all --bootstrap_resamples=1000

A model the attacks need that is not cached (e.g. the online reference models of lira_online when train_prune
ran without it) is a one-line error telling to run train_prune first.
"""
from __future__ import annotations

from absl import logging

from tfprune_mia.bin.common import define_experiment_flags, experiment_config_from_flags, run_main

define_experiment_flags()


def main() -> int:
    config = experiment_config_from_flags()  # validates every flag before any work starts
    from tfprune_mia.backend import enable_determinism
    from tfprune_mia.experiment import rerun_attacks
    from tfprune_mia.report import summary_table

    enable_determinism()
    logging.info("run directory: %s", config.base_dir)
    report = rerun_attacks(config)
    print(summary_table(report))
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
