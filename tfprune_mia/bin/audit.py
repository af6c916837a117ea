"""Audit your own saved Keras model (and its pruned version) for membership leakage; prints the same table and
writes the same result JSON as train_prune.

  audit --target_model=model.h5 --members=train.npz --non_members=test.npz \
        --shadow_models=shadow.h5 --shadow_members=shadow_train.npz --shadow_non_members=shadow_test.npz \
        [--pruned_model=pruned.h5] [--population=population.npz] --attacks=samia,rmia_offline,conf

Arrays are .npz files with `x` (records shaped like the model's input) and `y` (integer labels); models are
Keras h5 files or SavedModel directories, loaded in safe mode (no code runs from a model file).
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from tfprune_mia.bin.runner import run_main

flags.DEFINE_string("target_model", None, "Saved Keras model (.h5 or SavedModel directory) to audit.")
flags.DEFINE_string("members", None, ".npz (x, y) of records the target model was trained on.")
flags.DEFINE_string("non_members", None, ".npz (x, y) of records the target model never saw (same distribution).")
flags.DEFINE_list("shadow_models", [], "Shadow models trained like the target on other data (comma-separated).")
flags.DEFINE_list("shadow_members", [], "One .npz per shadow model: its training records.")
flags.DEFINE_list("shadow_non_members", [], "One .npz per shadow model: records it never saw.")
flags.DEFINE_string("pruned_model", None, "The target's pruned version, audited side by side on the same records.")
flags.DEFINE_list("pruned_shadow_models", [], "The attacker's pruned shadows (same data as --shadow_models); "
                  "default: the unpruned shadows.")
flags.DEFINE_string("population", None, ".npz (x, y) of records no model trained on (needed by RMIA).")
# Shared with the experiment binaries (which may already be imported into this process, e.g. in tests).
for define, name, default, text in [
        (flags.DEFINE_list, "attacks", ["samia", "conf", "entropy", "mentr"],
         "Attack registry names, or 'all' (online LiRA/RMIA need the train_prune pipeline)."),
        (flags.DEFINE_integer, "attack_epochs", 30, "Training epochs of the neural attack models (paper: 100)."),
        (flags.DEFINE_integer, "bootstrap_resamples", 200, "Bootstrap resamples of the 95% intervals (0 disables them)."),
        (flags.DEFINE_integer, "num_perturbations", 10, "Gaussian directions per sample for the sensitivity signal."),
        (flags.DEFINE_float, "perturbation_epsilon", 1e-3, "Finite-difference step of the sensitivity signal."),
        (flags.DEFINE_integer, "seed", 7, "Seed of the attack models and bootstrap.")]:
    if name not in flags.FLAGS:
        define(name, default, text)
flags.DEFINE_string("output", "audit.json", "Result JSON to write (an existing file is never overwritten).")
FLAGS = flags.FLAGS


def main() -> int:
    from tfprune_mia.errors import ConfigError

    if not FLAGS.target_model or not FLAGS.members or not FLAGS.non_members:
        raise ConfigError("pass --target_model, --members and --non_members (see audit --help)")
    count = len(FLAGS.shadow_models)
    if len(FLAGS.shadow_members) != count or len(FLAGS.shadow_non_members) != count:
        raise ConfigError(f"{count} shadow models need as many --shadow_members and --shadow_non_members files "
                          f"(got {len(FLAGS.shadow_members)} and {len(FLAGS.shadow_non_members)})")
    if FLAGS.pruned_shadow_models and len(FLAGS.pruned_shadow_models) != count:
        raise ConfigError(f"--pruned_shadow_models must list one model per shadow ({count})")
    output = Path(FLAGS.output)
    if output.exists():
        raise ConfigError(f"--output={output} exists and is never overwritten; pass another path")
    from tfprune_mia.attacks import ATTACKS, SignalConfig
    from tfprune_mia.audit.models import ModelData, audit_models, load_arrays, load_keras_model
    from tfprune_mia.backend import enable_determinism
    from tfprune_mia.io import write_json

    attacks = [n for n in ATTACKS.names() if not ATTACKS.get(n).needs_in_models] if FLAGS.attacks == ["all"] \
        else FLAGS.attacks
    signals = SignalConfig(FLAGS.num_perturbations, FLAGS.perturbation_epsilon)
    target = ModelData(load_keras_model(FLAGS.target_model, "target model"),
                       load_arrays(FLAGS.members, "members"), load_arrays(FLAGS.non_members, "non-members"))
    shadows = [ModelData(load_keras_model(m, "shadow model"), load_arrays(i, "shadow members"),
                         load_arrays(o, "shadow non-members"))
               for m, i, o in zip(FLAGS.shadow_models, FLAGS.shadow_members, FLAGS.shadow_non_members)]
    pruned_shadows = [ModelData(load_keras_model(m, "pruned shadow model"), s.members, s.non_members)
                      for m, s in zip(FLAGS.pruned_shadow_models, shadows)]
    pruned = load_keras_model(FLAGS.pruned_model, "pruned model") if FLAGS.pruned_model else None
    population = load_arrays(FLAGS.population, "population") if FLAGS.population else None
    enable_determinism()
    result = audit_models(target, shadows, pruned, pruned_shadows, attacks, population, signals, FLAGS.seed,
                          FLAGS.attack_epochs, FLAGS.bootstrap_resamples,
                          description={"target_model": FLAGS.target_model, "pruned_model": FLAGS.pruned_model})
    write_json(output, result.to_dict())
    print(result.with_path(output).table())
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
