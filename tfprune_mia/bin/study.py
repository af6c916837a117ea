"""Run a study: every combination of datasets, models, pruners, sparsities, defenses and seeds, each one cached
train_prune configuration, spread over processes by keras-tuner's chief/worker mode.

  study --flagfile=flags/study_digits.flags                       # one process runs every trial
  KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 study --flagfile=...
  KERASTUNER_TUNER_ID=worker0 KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 study --flagfile=...

Every trial is validated before any work. Re-running the same command resumes: finished trials are never
recomputed; a restarted worker (same KERASTUNER_TUNER_ID) resumes its own trial. Then: report --runs=<study dir>.
"""
from __future__ import annotations

from absl import flags, logging

from tfprune_mia.bin import common
from tfprune_mia.bin.common import define_experiment_flags, experiment_config_from_flags, start_distribution
from tfprune_mia.bin.runner import run_main

define_experiment_flags()
flags.DEFINE_list("study_datasets", None, "Dataset registry names of the study; default: --dataset.")
flags.DEFINE_list("study_models", None, "Model registry names; default: --model (empty: each dataset's default).")
flags.DEFINE_list("study_pruners", None, "Pruner registry names; default: --pruner.")
flags.DEFINE_list("study_sparsities", None, "Victim sparsities, each in (0, 1); default: --sparsity.")
flags.DEFINE_list("study_defenses", None, "Defenses as name or name:strength, e.g. none,ppb:4; default: --defense "
                  "(with --defense_arg). With --adaptive only the defended trials run the adaptive attack.")
flags.DEFINE_list("study_seeds", None, "Seeds; default: --seed.")
flags.DEFINE_string("study_dir", "", "Directory of the study's oracle state and manifest (local or any "
                    "TensorFlow file system path); default: a directory named after the grid under --run_root.")
flags.register_validator("study_dir", common.check_directory_flag(
    "pass a directory, a path that does not exist yet or a TensorFlow file system path such as gs://bucket/studies",
    writable=True, remote=True))
flags.DEFINE_float("study_poll_seconds", 2.0, "Seconds an idle worker waits before asking the chief again.")

FLAGS = flags.FLAGS


def study_grid():
    from tfprune_mia.pipeline.study import StudyGrid, parse_defenses, parse_numbers

    default_defense = FLAGS.defense + ("" if FLAGS.defense_arg is None else f":{FLAGS.defense_arg:g}")
    return StudyGrid(
        datasets=tuple(FLAGS.study_datasets or [FLAGS.dataset]),
        models=tuple(FLAGS.study_models or [FLAGS.model]),
        pruners=tuple(FLAGS.study_pruners or [FLAGS.pruner]),
        sparsities=parse_numbers(FLAGS.study_sparsities or [str(FLAGS.sparsity)], float, "study_sparsities"),
        defenses=parse_defenses(FLAGS.study_defenses or [default_defense]),
        seeds=parse_numbers(FLAGS.study_seeds or [str(FLAGS.seed)], int, "study_seeds"))


def make_prune(pruner, sparsity):
    return common.prune_config_from_flags(pruner, sparsity)


def make_defense(name, strength):
    return common.defense_config_from_flags(strength, name=name)


def main() -> int:
    from tfprune_mia.pipeline.study import run_study, study_configs, study_table

    base = experiment_config_from_flags()
    start_distribution(base)
    configs = study_configs(base, study_grid(), make_prune=make_prune, make_defense=make_defense)
    from tfprune_mia.backend import enable_determinism

    enable_determinism()
    logging.info("study of %d trials", len(configs))

    def progress(record):
        logging.info("trial %d %s: %s", record.index, "computed" if record.computed else "reused",
                     record.result.path)

    outcome = run_study(configs, FLAGS.study_dir or None, poll_seconds=FLAGS.study_poll_seconds, on_trial=progress)
    print(study_table(outcome))
    if outcome.missing:
        print(f"error: {len(outcome.missing)} trial(s) failed; fix the cause and re-run the same command "
              "(failed trials are retried, finished ones reused)")
        return 1
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
