"""Flags shared by the absl binaries: flags -> frozen configs -> library call (bin/runner runs the process)."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

from absl import flags

from tfprune_mia import fs

FLAGS = flags.FLAGS

MAX_SEED = 2**32 - 1  # scikit-learn's random_state range


def define_experiment_flags() -> None:
    if "dataset" in FLAGS:  # already defined by another binary imported into this process (tests)
        return
    flags.DEFINE_string("dataset", "digits", "Dataset registry name.")
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
    flags.DEFINE_enum("attack_artifact", "keras", ["keras", "tflite", "tflite_int8", "tflite_fp16"],
                      "What the attacks query, for every model: the Keras model, or its exported TFLite file "
                      "(float, dynamic-range int8 or float16 post-training quantisation).")
    flags.DEFINE_list("released_sparsities", [], "Other sparsities the victim is also released at (beside its "
                      "dense original), for the multi-version attacks (pair_conf, pair_lr, pair_lira_offline, "
                      "pair_lira_online); the attacker replicates each.")
    define_defense_flags()
    flags.DEFINE_integer("canaries", 0, "Canaries for the privacy audit: records of the shadow half, each added to "
                         "the victim's training set with probability 1/2; the result gets epsilon lower bounds "
                         "(0: no canary audit).")
    flags.DEFINE_string("canary_kind", "mislabel", "Canary kind: mislabel (random wrong label), noise, invert.")
    flags.DEFINE_integer("max_samples", 0, "Use a seeded random subset of this many records (0: all) for "
                         "affordable CPU runs; it gets its own run directory.")
    flags.DEFINE_string("distribution", "none", "tf.distribute strategy training and fine-tuning every model: "
                        "mirrored = all visible GPUs of this machine; multi_worker = the workers named by the "
                        "TF_CONFIG environment variable (only the chief writes the run directory); none = one "
                        "device. See docs/distribution.md.")
    flags.DEFINE_enum("stacked_training", "off", ["off", "auto"], "auto: train the attacker's original shadow and "
                      "reference models together as one stacked model when the architecture allows it (columnfc, "
                      "small_cnn, lenet5): cheaper for overhead-bound models (e.g. columnfc on digits), dearer for "
                      "compute-bound convolutions; statistically equivalent, not bit-identical, own cache keys. "
                      "off: one by one.")
    register_flag_checks()


def register_flag_checks() -> None:
    """Checks of flags that no config validates (paths, seed, the optional shadow sparsity), run while absl
    parses the flags: a bad value is one `error:` line before any import of TensorFlow or any work."""
    flags.register_validator("seed", _check(lambda seed: 0 <= seed <= MAX_SEED,
                                            f"must be in [0, {MAX_SEED}]; pass e.g. --seed=7"))
    flags.register_validator("shadow_sparsity", _check(
        lambda value: value is None or 0 < value < 1,
        "must be strictly between 0 and 1; pass e.g. --shadow_sparsity=0.7, or omit it to use --sparsity"))
    flags.register_validator("run_root", check_directory_flag(
        "pass a directory (it is created if missing), a path that does not exist yet or a TensorFlow file system "
        "path such as gs://bucket/runs", writable=True, remote=True))
    flags.register_validator("data_dir", check_directory_flag(
        "pass the directory holding the dataset files, or omit --data_dir for the standard location"))


def _check(predicate: Callable, message: str) -> Callable:
    def check(value):
        if not predicate(value):
            raise flags.ValidationError(message)
        return True

    return check


def check_directory_flag(fix: str, writable: bool = False, remote: bool = False) -> Callable:
    """A validator for a flag naming a directory: it, or where it would be created, must not be a file.
    `remote`: a `scheme://` path of a TensorFlow file system (e.g. gs://bucket/runs) is accepted too; only its
    scheme is checked here, the bucket and its permissions by the first write."""

    def check(value):
        if not value:
            return True
        if fs.is_remote(value):
            if not remote:
                raise flags.ValidationError(f"{value}: this flag needs a local directory; {fix}")
            problem = fs.scheme_problem(value)
            if problem:
                raise flags.ValidationError(problem)
            return True
        path = os.path.abspath(os.path.expanduser(value))
        existing = path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            where = "" if existing == path else f" (in {value})"
            raise flags.ValidationError(f"{existing} is a file, not a directory{where}; {fix}")
        if writable and not os.access(existing, os.W_OK | os.X_OK):
            raise flags.ValidationError(f"{existing} is not writable; fix its permissions or {fix}")
        return True

    return check


def define_defense_flags() -> None:
    flags.DEFINE_string("defense", "none", "Defense while fine-tuning the pruned victim (mcmia needs "
                        "--pruner=admm).")
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


def defense_config_from_flags(strength=None, name=None):
    """The DefenseConfig of the defense flags; `strength` overrides --defense_arg (the tuner's trials). With
    `name`, defense `name` at `strength` (None: its default) with its options from the flags (a study's grid)."""
    from tfprune_mia.defenses import DEFENSES, DefenseConfig

    if name is None:
        name, strength = FLAGS.defense, FLAGS.defense_arg if strength is None else strength
    return DefenseConfig(name, strength, options_from_flags(DEFENSES.get(name).options_class))


def check_option_flags(pruners, defenses) -> None:
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
    used = {("pruner", name) for name in pruners} | {("defense", name) for name in defenses}
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
    # the grids of bin/sweep and bin/study use their pruners and defenses too
    swept = [name for flag in ("pruners", "study_pruners") if flag in FLAGS for name in FLAGS[flag].value or []]
    studied = [entry.split(":")[0] for entry in (FLAGS["study_defenses"].value or [])] \
        if "study_defenses" in FLAGS else []
    check_option_flags({prune.pruner, shadow_prune.pruner, *swept}, {FLAGS.defense, *studied})
    attacks = tuple(ATTACKS.names()) if FLAGS.attacks == ["all"] else tuple(FLAGS.attacks)
    return ExperimentConfig(
        dataset=FLAGS.dataset, model=FLAGS.model, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
        num_shadows=FLAGS.num_shadows, train=train, finetune=finetune, prune=prune, shadow_prune=shadow_prune,
        attacks=attacks, attack_epochs=FLAGS.attack_epochs,
        signals=SignalConfig(FLAGS.num_perturbations, FLAGS.perturbation_epsilon), run_root=FLAGS.run_root,
        num_reference_models=FLAGS.num_reference_models, bootstrap_resamples=FLAGS.bootstrap_resamples,
        defense=defense_config_from_flags(), adaptive=FLAGS.adaptive, max_samples=FLAGS.max_samples,
        attack_artifact=FLAGS.attack_artifact, released_sparsities=tuple(map(float, FLAGS.released_sparsities)),
        canaries=FLAGS.canaries, canary_kind=FLAGS.canary_kind, distribution=FLAGS.distribution,
        stacked_training=FLAGS.stacked_training)


def start_distribution(config) -> None:
    """Build the run's tf.distribute strategy before anything else runs on TensorFlow: multi_worker can
    configure TensorFlow's collective ops only before its runtime starts."""
    from tfprune_mia import distribute

    distribute.strategy(config.distribution)


def print_result(library_call: Callable, *args) -> None:
    """The common tail of the binaries: determinism on, run the library call, print its typed result's table."""
    from tfprune_mia.backend import enable_determinism

    enable_determinism()
    print(library_call(*args).table())


def run_experiment_binary(library_call: str) -> Callable[[], int]:
    """The `main` of a binary that runs one configuration: flags -> config (validated before any work) ->
    `tfprune_mia.pipeline.experiment.<library_call>(config)` -> the summary table on stdout."""

    def main() -> int:
        config = experiment_config_from_flags()
        start_distribution(config)
        from tfprune_mia.pipeline import experiment

        print_result(getattr(experiment, library_call), config)
        return 0

    return main
