"""Run a grid of train_prune configurations (pruners x sparsities) and print one combined table.

  sweep --sparsities=0.5,0.7,0.9
  sweep --pruners=l1_unstructured,l1_filter --sparsities=0.7,0.9 --flagfile=flags/demo.flags

The originals are trained once and shared by every configuration; finished configurations are skipped, so a
killed sweep is resumed by running the same command again.
"""
from __future__ import annotations

from absl import flags, logging

from tfprune_mia.bin.common import (define_experiment_flags, experiment_config_from_flags, prune_config_from_flags,
                                    start_distribution)
from tfprune_mia.bin.runner import run_main

define_experiment_flags()
flags.DEFINE_list("pruners", None, "Pruner registry names of the grid; default: --pruner.")
flags.DEFINE_list("sparsities", None, "Victim sparsities of the grid, each in (0, 1); default: --sparsity.")

FLAGS = flags.FLAGS


def main() -> int:
    from tfprune_mia.io import stable_hash, write_csv
    from tfprune_mia.pipeline.sweep import parse_sparsities, run_sweep, sweep_configs, sweep_csv_rows, sweep_table

    base = experiment_config_from_flags()
    start_distribution(base)
    # Every configuration is validated before the first one starts.
    configs = sweep_configs(base, FLAGS.pruners or [FLAGS.pruner],
                            parse_sparsities(FLAGS.sparsities or [str(FLAGS.sparsity)]),
                            make_prune=prune_config_from_flags)  # every option of every pruner in the grid
    from tfprune_mia.backend import enable_determinism

    enable_determinism()
    logging.info("sweep of %d configurations in %s", len(configs), base.base_dir)

    def progress(index, row):
        logging.info("[%d/%d] %s @ %g %s: %s", index + 1, len(configs), row.config.prune.pruner,
                     row.config.prune.sparsity, "reused" if row.reused else "done", row.result.path)

    rows = run_sweep(configs, progress)
    csv_path = base.base_dir / "sweeps" / f"sweep-{stable_hash([c.result_key() for c in configs], 8)}.csv"
    write_csv(csv_path, sweep_csv_rows(rows))
    print(sweep_table(rows))
    print(f"\nevery attack and metric: {csv_path}")
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
