"""Training shared by the neural attacks (SAMIA and the MLP baselines), spec §5.3: cross-entropy over two
logits (1 = member), SGD momentum 0.9, lr 1e-3 divided by 10 at 50% and 75% of the epochs, coupled weight
decay 5e-4, batch 128, the final epoch's model kept (as in the paper)."""
from __future__ import annotations

import numpy as np

from tfprune_mia.attacks.base import Attack, AttackContext
from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.training import TrainingModel, make_dataset

LEARNING_RATE = 1e-3
WEIGHT_DECAY = 5e-4
MOMENTUM = 0.9


def step_schedule(epochs: int, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    boundaries = [int(epochs * 0.5) * steps_per_epoch, int(epochs * 0.75) * steps_per_epoch]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, [LEARNING_RATE, LEARNING_RATE * 0.1, LEARNING_RATE * 0.01])


def train_attack_model(model: keras.Model, features: np.ndarray, is_member: np.ndarray,
                       context: AttackContext) -> keras.Model:
    steps_per_epoch = int(np.ceil(len(is_member) / context.batch_size))
    trainer = TrainingModel(model, weight_decay=WEIGHT_DECAY)
    trainer.compile(optimizer=keras.optimizers.SGD(step_schedule(context.epochs, steps_per_epoch),
                                                   momentum=MOMENTUM))
    trainer.fit(make_dataset(features.astype(np.float32), is_member.astype(np.int64), context.batch_size,
                             shuffle_seed=context.seed),
                epochs=context.epochs, verbose=context.verbose)
    return model


def member_probability(model: keras.Model, features: np.ndarray) -> np.ndarray:
    logits = model.predict(features.astype(np.float32), batch_size=4096, verbose=0)
    return tf.nn.softmax(logits, axis=-1).numpy()[:, 1]


class NeuralAttack(Attack):
    """An attack model on per-sample features of the signals; score = P(member)."""

    decision_threshold = 0.5

    def features(self, signals: Signals) -> np.ndarray:
        raise NotImplementedError

    def build(self, num_features: int, num_classes: int) -> keras.Model:
        raise NotImplementedError

    def fit(self, shadow: MembershipSet) -> "NeuralAttack":
        set_seed(self.context.seed)
        features = self.features(shadow.signals)
        self.model = self.build(features.shape[1], shadow.signals.num_classes)
        train_attack_model(self.model, features, shadow.is_member, self.context)
        return self

    def score(self, signals: Signals) -> np.ndarray:
        return member_probability(self.model, self.features(signals))
