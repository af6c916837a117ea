"""Tune a defense's strength (--defense_arg) with keras-tuner: the highest pruned test accuracy whose attack
metric stays within a bound; trials go to TensorBoard's hparams dashboard.

  tune --defense=ppb --tune_min=0.5 --tune_max=32 --tune_metric=balanced_accuracy --tune_bound=0.55
  tune --flagfile=flags/fashion_mnist_defenses.flags --defense=adv --adaptive --max_trials=4
"""
from __future__ import annotations

from absl import flags, logging

from tfprune_mia.bin.common import define_experiment_flags, experiment_config_from_flags, start_distribution
from tfprune_mia.bin.runner import run_main

define_experiment_flags()
flags.DEFINE_float("tune_min", 0.5, "Lower end of the defense_arg search range.")
flags.DEFINE_float("tune_max", 32.0, "Upper end of the defense_arg search range.")
flags.DEFINE_boolean("tune_log", True, "Sample defense_arg log-uniformly (else uniformly).")
flags.DEFINE_enum("tune_metric", "balanced_accuracy", ["balanced_accuracy", "auc", "tpr_at_0.01_fpr", "advantage"],
                  "Attack metric the bound applies to (adaptive attack when --adaptive).")
flags.DEFINE_float("tune_bound", 0.55, "Largest acceptable attack metric.")
flags.DEFINE_string("tune_attack", "", "Attack whose metric is bounded; empty: the maximum over --attacks.")
flags.DEFINE_integer("max_trials", 5, "Number of keras-tuner trials (random search).")

FLAGS = flags.FLAGS


def main() -> int:
    config = experiment_config_from_flags()  # validates every flag before any work starts
    start_distribution(config)
    from tfprune_mia.backend import enable_determinism
    from tfprune_mia.pipeline.tuning import TuneConfig, format_tuning, tune_defense
    from tfprune_mia.pipeline.experiment import run_experiment

    tune = TuneConfig(FLAGS.tune_min, FLAGS.tune_max, FLAGS.tune_log, FLAGS.tune_metric, FLAGS.tune_bound,
                      FLAGS.tune_attack, FLAGS.max_trials)
    enable_determinism()
    logging.info("run directory: %s", config.base_dir)
    print(format_tuning(tune_defense(config, tune, run_experiment)))
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
