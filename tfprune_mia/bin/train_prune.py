"""Train (or reuse) the original victim and shadows, prune and fine-tune them, attack original vs pruned.

  train_prune                                # the demo on the bundled digits data
  train_prune --sparsity=0.9 --pruner=l1_unstructured
  train_prune --flagfile=flags/cifar10_resnet18.flags
"""
from __future__ import annotations

from tfprune_mia.bin.common import define_experiment_flags, run_experiment_binary
from tfprune_mia.bin.runner import run_main

define_experiment_flags()

main = run_experiment_binary("run_experiment")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
