"""Re-run membership inference attacks on the models train_prune cached, retraining nothing.

  attack --attacks=lira_offline,rmia_offline,conf   # same model/pruning flags as the train_prune run
  attack --attacks=all --bootstrap_resamples=1000

A model the attacks need that is not cached (e.g. the online reference models of lira_online when train_prune
ran without it) is a one-line error telling to run train_prune first.
"""
from __future__ import annotations

from tfprune_mia.bin.common import define_experiment_flags, run_experiment_binary
from tfprune_mia.bin.runner import run_main

define_experiment_flags()

main = run_experiment_binary("rerun_attacks")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
