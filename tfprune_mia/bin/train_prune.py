"""Train (or reuse) the original victim and shadows, prune and fine-tune them, attack original vs pruned.

  train_prune                                # the demo on the bundled digits data
  train_prune --sparsity=0.9 --pruner=l1_unstructured
  train_prune --flagfile=flags/cifar10_resnet18.flags
"""
from __future__ import annotations

from absl import logging

from tfprune_mia.bin.common import define_experiment_flags, experiment_config_from_flags, run_main

define_experiment_flags()


def main() -> int:
    config = experiment_config_from_flags()  # validates every flag before any work starts
    from tfprune_mia.backend import enable_determinism
    from tfprune_mia.experiment import run_experiment
    from tfprune_mia.report import summary_table

    enable_determinism()
    logging.info("run directory: %s", config.base_dir)
    report = run_experiment(config)
    print(summary_table(report))
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
