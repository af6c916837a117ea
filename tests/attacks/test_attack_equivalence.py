"""The attack training as it runs now (compiled whole-epoch loop, SAMIA's fused encoder layer, stateless per-step
8-bit dropout masks) is statistically the attack Keras `fit` trained before (Keras' own encoder sublayers, Keras'
dropout generator): same recipe, same initialisation and batch order, only the dropout masks' random numbers
(and float rounding) differ, so the attack AUCs on held-out samples agree seed by seed."""
import contextlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfprune_mia.attacks import AttackContext, Signals, make_attack
from tfprune_mia.attacks.neural import (MOMENTUM, WEIGHT_DECAY, TorchSGD, member_probability, step_schedule,
                                        train_attack_model)
from tfprune_mia.attacks.samia import keras_reference_layers
from tfprune_mia.backend import set_seed
from tfprune_mia.batch_order import make_dataset
from tfprune_mia.training import TrainingModel

CLASSES = 4


def membership_problem(seed, n=800):
    """Members' posteriors are more confident on their label and their sensitivities larger: learnable, not
    trivially (AUC ~0.75), so a broken mask or attention core moves it."""
    rng = np.random.default_rng(seed)
    member = rng.integers(0, 2, n)
    labels = rng.integers(0, CLASSES, n)
    alpha = np.ones((n, CLASSES))
    alpha[np.arange(n), labels] += np.where(member, 12.0, 3.0)
    posteriors = np.stack([rng.dirichlet(a) for a in alpha]).astype(np.float32)
    sensitivity = (rng.random((n, CLASSES)) * (1 + 0.3 * member[:, None])).astype(np.float32)
    return Signals(posteriors, sensitivity, labels), member


def keras_fit(model, x, y, context):
    steps = -(-len(y) // context.batch_size)
    trainer = TrainingModel(model, weight_decay=WEIGHT_DECAY)
    trainer.compile(optimizer=TorchSGD(step_schedule(context.epochs, steps), momentum=MOMENTUM))
    trainer.fit(make_dataset(x, y.astype(np.int64), context.batch_size, shuffle_seed=context.seed),
                epochs=context.epochs, verbose=0)


def held_out_auc(name, seed, old):
    (train, is_member), (test, test_member) = membership_problem(100 + seed), membership_problem(200 + seed)
    attack = make_attack(name, AttackContext(seed=seed, epochs=30, batch_size=64))
    features = attack.features(train)
    with keras_reference_layers() if old else contextlib.nullcontext():
        set_seed(seed)
        model = attack.build(features.shape[1], CLASSES)
        (keras_fit if old else train_attack_model)(model, features, is_member, attack.context)
    return roc_auc_score(test_member, member_probability(model, attack.features(test)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nn", "samia"])
def test_new_training_path_gives_the_attack_auc_of_the_keras_fit_path(name):
    old = np.array([held_out_auc(name, seed, old=True) for seed in range(3)])
    new = np.array([held_out_auc(name, seed, old=False) for seed in range(3)])
    assert old.mean() > 0.65  # the attack learned something, so a broken path has room to differ
    assert abs(new.mean() - old.mean()) < 0.02
    assert np.max(np.abs(new - old)) < 0.04
