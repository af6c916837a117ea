"""Flags and error handling shared by the absl binaries: flags -> frozen configs -> library call."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging

from tfprune_mia.errors import TfpruneError

FLAGS = flags.FLAGS


def define_experiment_flags() -> None:
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
    flags.DEFINE_string("shadow_pruner", None, "Pruner of the attacker's shadows; default: the victim's.")
    flags.DEFINE_float("shadow_sparsity", None, "Sparsity of the attacker's shadows; default: the victim's.")
    flags.DEFINE_list("attacks", ["samia", "conf", "entropy", "mentr"], "Attack registry names, or 'all'.")
    flags.DEFINE_integer("attack_epochs", 30, "Training epochs of the neural attack models (paper: 100).")
    flags.DEFINE_integer("num_perturbations", 10, "Gaussian directions per sample for the sensitivity signal.")
    flags.DEFINE_float("perturbation_epsilon", 1e-3, "Finite-difference step of the sensitivity signal.")
    flags.DEFINE_string("run_root", "runs", "Directory holding all run directories.")


def experiment_config_from_flags():
    from tfprune_mia.attacks import ATTACKS, SignalConfig
    from tfprune_mia.experiment import ExperimentConfig
    from tfprune_mia.pruning import PruneConfig
    from tfprune_mia.training import TrainConfig

    train = TrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                        weight_decay=FLAGS.weight_decay, patience=FLAGS.patience)
    finetune = TrainConfig(epochs=FLAGS.finetune_epochs, batch_size=FLAGS.batch_size,
                           learning_rate=FLAGS.learning_rate, weight_decay=FLAGS.weight_decay,
                           patience=FLAGS.patience)
    prune = PruneConfig(FLAGS.pruner, FLAGS.sparsity, FLAGS.schedule)
    shadow_prune = PruneConfig(FLAGS.shadow_pruner or FLAGS.pruner,
                               FLAGS.sparsity if FLAGS.shadow_sparsity is None else FLAGS.shadow_sparsity,
                               FLAGS.schedule)
    attacks = tuple(ATTACKS.names()) if FLAGS.attacks == ["all"] else tuple(FLAGS.attacks)
    return ExperimentConfig(
        dataset=FLAGS.dataset, model=FLAGS.model, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
        num_shadows=FLAGS.num_shadows, train=train, finetune=finetune, prune=prune, shadow_prune=shadow_prune,
        attacks=attacks, attack_epochs=FLAGS.attack_epochs,
        signals=SignalConfig(FLAGS.num_perturbations, FLAGS.perturbation_epsilon), run_root=FLAGS.run_root)


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

    app.run(wrapped)
