"""Flags and error handling shared by the absl binaries: flags -> frozen configs -> library call."""
from __future__ import annotations

import dataclasses
import sys
from typing import Callable

from absl import app, flags, logging

from tfprune_mia.errors import TfpruneError

FLAGS = flags.FLAGS


def define_experiment_flags() -> None:
    if "dataset" in FLAGS:  # already defined by another binary imported into this process (tests)
        return
    flags.DEFINE_string("dataset", "digits", "Dataset registry name (digits, fashion_mnist, cifar10, ...).")
    flags.DEFINE_string("model", "", "Model registry name; empty = the dataset's default model.")
    flags.DEFINE_string("data_dir", None, "Directory holding the dataset files; default: its standard location.")
    flags.DEFINE_integer("seed", 7, "Seed of the split, initialisations, shuffling and attacks.")
    flags.DEFINE_integer("num_shadows", 2, "Number of shadow models the attacker trains (paper: 5; 2 keeps the demo < 2 min).")
    flags.DEFINE_integer("epochs", 30, "Maximum training epochs of the original models (early stopping on dev).")
    flags.DEFINE_integer("finetune_epochs", 15, "Maximum fine-tuning epochs after pruning (paper: epochs // 2).")
    flags.DEFINE_integer("batch_size", 32, "Training batch size (paper: 128; 32 suits the tiny digits splits).")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate for training and fine-tuning.")
    flags.DEFINE_float("weight_decay", 5e-4, "Coupled L2 weight decay on every trainable variable.")
    flags.DEFINE_integer("patience", 6, "Stop after this many epochs without strict dev-accuracy improvement.")
    flags.DEFINE_string("pruner", "l1_unstructured", "Pruner registry name for the victim.")
    flags.DEFINE_float("sparsity", 0.7, "Fraction of prunable weights removed from the victim, in (0, 1).")
    flags.DEFINE_string("schedule", "constant", "constant (one-shot, as the paper) or polynomial (gradual).")
    flags.DEFINE_enum("scope", "layer", ["layer", "global"], "l1_unstructured: per-layer (paper) or one global "
                      "magnitude threshold.")
    flags.DEFINE_string("m_by_n", "", "l1_unstructured: tfmot M:N sparsity, e.g. 2:4 (with --sparsity=0.5).")
    flags.DEFINE_enum("slimming_mode", "l1", ["l1", "one_shot"], "slimming: l1 = network slimming with a gamma-L1 "
                      "sparsity phase; one_shot = the authors' nni SlimPruner (no L1 phase).")
    flags.DEFINE_float("slimming_l1", 1e-4, "slimming: strength of the L1 penalty on BN gammas (Liu et al.: 1e-4).")
    flags.DEFINE_integer("admm_iterations", 10, "admm: number of ADMM iterations (W-, Z- and dual steps).")
    flags.DEFINE_integer("admm_epochs", 1, "admm: training epochs of each W-step.")
    flags.DEFINE_float("admm_rho", 1e-3, "admm: initial penalty rho.")
    flags.DEFINE_float("admm_rho_growth", 1.3, "admm: rho multiplier after every ADMM iteration.")
    flags.DEFINE_float("admm_rho_max", 1.0, "admm: cap of rho.")
    flags.DEFINE_string("shadow_pruner", None, "Pruner of the attacker's shadows; default: the victim's.")
    flags.DEFINE_float("shadow_sparsity", None, "Sparsity of the attacker's shadows; default: the victim's.")
    flags.DEFINE_list("attacks", ["samia", "conf", "entropy", "mentr"], "Attack registry names, or 'all'.")
    flags.DEFINE_integer("attack_epochs", 30, "Training epochs of the neural attack models (paper: 100).")
    flags.DEFINE_integer("num_perturbations", 10, "Gaussian directions per sample for the sensitivity signal.")
    flags.DEFINE_float("perturbation_epsilon", 1e-3, "Finite-difference step of the sensitivity signal.")
    flags.DEFINE_string("run_root", "runs", "Directory holding all run directories.")
    flags.DEFINE_integer("num_reference_models", 2, "Extra reference models (even; trained on halves of the "
                         "victim's train+test pool) for lira_online / rmia_online; trained only for those.")
    flags.DEFINE_integer("bootstrap_resamples", 200, "Bootstrap resamples of the attack metrics' 95% intervals "
                         "(0 disables them).")
    define_defense_flags()
    flags.DEFINE_integer("canaries", 0, "Canaries for the privacy audit: records of the shadow half, each added to "
                         "the victim's training set with probability 1/2; the result gets epsilon lower bounds "
                         "(0: no canary audit).")
    flags.DEFINE_string("canary_kind", "mislabel", "Canary kind: mislabel (random wrong label), noise, invert.")
    flags.DEFINE_integer("max_samples", 0, "Use a seeded random subset of this many records (0: all) for "
                         "affordable CPU runs; it gets its own run directory.")


def define_defense_flags() -> None:
    flags.DEFINE_string("defense", "none", "Defense while fine-tuning the pruned victim: none, ppb, adv, dp, "
                        "mcmia (mcmia needs --pruner=admm).")
    flags.DEFINE_float("defense_arg", None, "Defense strength: PPB lambda (default 4), adv/mcmia theta "
                       "(default 4), dp noise multiplier sigma (default 1.0).")
    flags.DEFINE_boolean("adaptive", False, "Also attack with shadows fine-tuned with the same defense and "
                         "strength, reported beside the non-adaptive attack.")
    flags.DEFINE_enum("adv_mode", "proper", ["proper", "as_coded"], "adv/mcmia: proper = k inference steps per "
                      "classifier step over the epoch (Nasr); as_coded = the authors' one classifier step per epoch.")
    flags.DEFINE_integer("adv_steps", 7, "adv/mcmia: inference-model steps k per classifier step.")
    flags.DEFINE_boolean("mcmia_retrain_game", True, "mcmia: keep the min-max game in masked retraining too.")
    flags.DEFINE_float("dp_clip", 1.0, "dp: per-example gradient clip norm C.")
    flags.DEFINE_float("dp_target_epsilon", None, "dp: calibrate the noise multiplier to this epsilon over "
                       "--finetune_epochs (overrides --defense_arg).")
    flags.DEFINE_float("dp_delta", None, "dp: delta of the reported epsilon; default min(1e-5, N^-1.1) (N = "
                       "training set).")
    flags.DEFINE_enum("dp_optimizer", "adam", ["adam", "sgd"], "dp: TF Privacy DP optimiser.")
    flags.DEFINE_enum("dp_scope", "finetune", ["finetune", "end_to_end"], "dp: finetune = DP fine-tuning of a "
                      "non-private original (its epsilon covers that stage only); end_to_end = the victim's "
                      "original trained with DP-SGD too, one composed epsilon for the released model.")


def options_from_flags(options_class):
    """An options dataclass filled from the flags its fields name (`Options.flag_names`), so every field of every
    component is read and none can be forgotten here."""
    return options_class(**{field: FLAGS[flag].value for field, flag in options_class.flag_names().items()})


def prune_config_from_flags(pruner: str, sparsity: float):
    """The PruneConfig of `pruner` at `sparsity` with all of that pruner's options from the flags (a sweep over
    several pruners calls this once per pruner, so each carries its own options)."""
    from tfprune_mia.pruning import PRUNERS, PruneConfig

    return PruneConfig(pruner, sparsity, options_from_flags(PRUNERS.get(pruner).options_class))


def defense_config_from_flags(strength=None):
    """The DefenseConfig of the defense flags; `strength` overrides --defense_arg (the tuner's trials)."""
    from tfprune_mia.defenses import DEFENSES, DefenseConfig

    return DefenseConfig(FLAGS.defense, FLAGS.defense_arg if strength is None else strength,
                         options_from_flags(DEFENSES.get(FLAGS.defense).options_class))


def check_option_flags(pruners, defense: str) -> None:
    """Refuse an option flag set on the command line that belongs only to pruners / defenses this run does not
    use (e.g. --scope=global with --pruner=l1_filter): it would be silently ignored."""
    from tfprune_mia.defenses import DEFENSES
    from tfprune_mia.errors import ConfigError
    from tfprune_mia.pruning import PRUNERS

    owners = {}
    for kind, registry in (("pruner", PRUNERS), ("defense", DEFENSES)):
        for name in registry.names():
            for flag in registry.get(name).options_class.flag_names().values():
                owners.setdefault(flag, []).append((kind, name))
    used = {("pruner", name) for name in pruners} | {("defense", defense)}
    for flag, components in sorted(owners.items()):
        if FLAGS[flag].present and not used.intersection(components):
            kind, name = components[0]
            raise ConfigError(f"--{flag} is an option of {kind} {' / '.join(n for _, n in components)}, which this "
                              f"run does not use; drop it or pass --{kind}={name}")


def experiment_config_from_flags():
    from tfprune_mia.attacks import ATTACKS, SignalConfig
    from tfprune_mia.pipeline.config import ExperimentConfig
    from tfprune_mia.training import TrainConfig

    train = TrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                        weight_decay=FLAGS.weight_decay, patience=FLAGS.patience)
    finetune = dataclasses.replace(train, epochs=FLAGS.finetune_epochs)  # same recipe, fewer epochs
    # The pruner options apply to the shadows too, so an attacker who knows the method knows all of it.
    prune = prune_config_from_flags(FLAGS.pruner, FLAGS.sparsity)
    shadow_prune = prune_config_from_flags(FLAGS.shadow_pruner or FLAGS.pruner,
                                           FLAGS.sparsity if FLAGS.shadow_sparsity is None else FLAGS.shadow_sparsity)
    swept = (FLAGS["pruners"].value or []) if "pruners" in FLAGS else []  # bin/sweep's grid
    check_option_flags({prune.pruner, shadow_prune.pruner, *swept}, FLAGS.defense)
    attacks = tuple(ATTACKS.names()) if FLAGS.attacks == ["all"] else tuple(FLAGS.attacks)
    return ExperimentConfig(
        dataset=FLAGS.dataset, model=FLAGS.model, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
        num_shadows=FLAGS.num_shadows, train=train, finetune=finetune, prune=prune, shadow_prune=shadow_prune,
        attacks=attacks, attack_epochs=FLAGS.attack_epochs,
        signals=SignalConfig(FLAGS.num_perturbations, FLAGS.perturbation_epsilon), run_root=FLAGS.run_root,
        num_reference_models=FLAGS.num_reference_models, bootstrap_resamples=FLAGS.bootstrap_resamples,
        defense=defense_config_from_flags(), adaptive=FLAGS.adaptive, max_samples=FLAGS.max_samples,
        canaries=FLAGS.canaries, canary_kind=FLAGS.canary_kind)


def print_result(library_call: Callable, *args) -> None:
    """The common tail of the binaries: determinism on, run the library call, print its typed result's table."""
    from tfprune_mia.backend import enable_determinism

    enable_determinism()
    print(library_call(*args).table())


def run_main(main: Callable[[], int]) -> None:
    """Run `main` under absl; a TfpruneError becomes one line on stderr and exit code 2."""

    def wrapped(argv):
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}; flags look like --sparsity=0.7", file=sys.stderr)
            return 2
        try:
            return main()
        except TfpruneError as err:
            logging.flush()
            print(f"error: {err}", file=sys.stderr)
            return 2

    app.run(wrapped, flags_parser=_parse_flags_or_exit)


def _parse_flags_or_exit(argv):
    """absl's own parser, but a malformed value (e.g. --sparsity=abc) ends like every other bad input: one
    `error:` line and exit code 2, instead of absl's two-line FATAL message and exit code 1."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}; see --helpfull for every flag and its type", file=sys.stderr)
        sys.exit(2)


def run_experiment_binary(library_call: str) -> Callable[[], int]:
    """The `main` of a binary that runs one configuration: flags -> config (validated before any work) ->
    `tfprune_mia.pipeline.experiment.<library_call>(config)` -> the summary table on stdout."""

    def main() -> int:
        config = experiment_config_from_flags()
        from tfprune_mia.pipeline import experiment

        print_result(getattr(experiment, library_call), config)
        return 0

    return main
