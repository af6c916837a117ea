"""Neural attacks: the training shared by SAMIA and the MLP baselines (Yuan & Zhang 2022), and the MIAFC baselines
(docs/paper_map.md).

Training: cross-entropy over two logits (1 = member), SGD with PyTorch-form momentum 0.9, lr 1e-3 divided by
10 at 50% and 75% of the epochs, coupled weight decay 5e-4 on every parameter, batch 128, shuffled, the final
epoch's model kept (as in the paper).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
from absl import logging

from tfprune_mia.attacks.base import ATTACKS, Attack, AttackContext
from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.backend import keras, set_seed, tf, unregistering_custom_gradients
from tfprune_mia.models.layers import xavier_normal
from tfprune_mia.training import CompiledEpochs, TrainingModel

LEARNING_RATE = 1e-3
WEIGHT_DECAY = 5e-4
MOMENTUM = 0.9


@keras.utils.register_keras_serializable(package="tfprune_mia")
class TorchSGD(keras.optimizers.SGD):
    """SGD with PyTorch's momentum form v <- mu*v + g; w <- w - lr*v.

    Keras' form (v <- mu*v - lr*g; w <- w + v) folds the learning rate into the velocity, so after each
    MultiStepLR drop it keeps moving with the old rate for a while; PyTorch's applies the new rate at once.
    """

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        momentum = tf.cast(self.momentum, variable.dtype)
        velocity = self.momentums[self._index_dict[self._var_key(variable)]]
        gradient = tf.convert_to_tensor(gradient)  # attack models have no sparse (embedding) gradients
        if hasattr(variable, "handle") and hasattr(velocity, "handle"):
            # TF's fused kernel computes exactly this form (accum = mu*accum + g; var -= lr*accum) in one op
            # instead of five, which is a measurable part of a small attack model's step.
            tf.raw_ops.ResourceApplyMomentum(var=variable.handle, accum=velocity.handle, lr=lr, grad=gradient,
                                             momentum=momentum, use_locking=False, use_nesterov=False)
        else:
            velocity.assign(momentum * velocity + gradient)
            variable.assign_sub(lr * velocity)


def step_schedule(epochs: int, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    # PiecewiseConstantDecay keeps value i while step <= boundary i, so the drop after milestone epoch m happens
    # at step m*steps-1 + 1; a milestone at epoch 0 never fires (as PyTorch's MultiStepLR).
    never = 2**31 - 1  # fits the int32 step counter the schedule may compare against
    boundaries = [int(epochs * f) * steps_per_epoch - 1 if int(epochs * f) > 0 else never for f in (0.5, 0.75)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, [LEARNING_RATE, LEARNING_RATE * 0.1, LEARNING_RATE * 0.01])


class StepDropoutMasks:
    """Dropout masks for one Keras Dropout layer, a function of (seed, optimiser step, layer) alone.

    Stands in for the layer's random generator while an attack model trains. Keras' own draws one float32
    uniform per element from a stateful Philox stream; the Philox rounds are most of a dropout layer's cost
    (~40% of a MIAFC epoch). Here one stateless Philox op draws a quarter as many 32-bit words and each element
    compares 8 random bits against t = floor(rate * 2**8) or t + 1, the +1 chosen per layer and step with
    probability f = frac(rate * 2**8) from one more 32-bit word: every element is dropped with probability
    exactly `rate` (to 2**-32; Keras' float draw: 2**-23), and kept values are scaled by 1/(1 - rate) as in
    Keras. The shared choice of t couples the elements of one layer and step, with covariance
    f * (1 - f) * 2**-16 <= 2**-18 (rate 0.2: 2.4e-6, 1.5e-5 of an element's variance rate * (1 - rate));
    16 random bits per element (covariance below 1e-10) cost 1.7-1.8x as much per mask (docs/performance.md).
    The masks do not depend on what ran before in the process, so a run repeats exactly.
    """

    def __init__(self, seed: int, step: tf.Variable, index: int, num_layers: int):
        self.seed, self.step, self.index, self.num_layers = int(seed), step, int(index), int(num_layers)

    def dropout(self, inputs, rate, noise_shape=None):
        shape = tf.shape(inputs) if noise_shape is None else tf.convert_to_tensor(noise_shape)
        size = tf.reduce_prod(shape)
        # Distinct for every (step, layer): stateless ops give equal draws for equal keys.
        key = tf.stack([tf.constant(self.seed, tf.int64),
                        tf.cast(self.step, tf.int64) * self.num_layers + self.index])
        scaled = float(rate) * 2**8
        base = int(scaled)
        if base >= 2**8 - 1:  # t + 1 would not fit a byte: one whole word per element (rates > 0.996)
            words = tf.random.stateless_uniform([size], seed=key, minval=None, maxval=None, dtype=tf.uint32)
            keep = words >= tf.constant(min(int(round(float(rate) * 2**32)), 2**32 - 1), tf.uint32)
        else:
            # Four bytes per word for the elements, and a last word (past every element's byte) for t.
            words = tf.random.stateless_uniform([size // 4 + 2], seed=key, minval=None, maxval=None,
                                                dtype=tf.uint32)
            plus_one = words[-1] < tf.constant(min(int(round((scaled - base) * 2**32)), 2**32 - 1), tf.uint32)
            threshold = tf.constant(base, tf.uint8) + tf.cast(plus_one, tf.uint8)
            keep = tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:size] >= threshold
        mask = tf.cast(tf.reshape(keep, shape), inputs.dtype) * tf.cast(1.0 / (1.0 - rate), inputs.dtype)
        return inputs * mask


def dropout_layers(model: keras.Model) -> list:
    """Every Keras Dropout layer of `model`, nested ones (MultiHeadAttention's) included, in a fixed order."""
    return [layer for layer in model.submodules if isinstance(layer, keras.layers.Dropout)]


@contextlib.contextmanager
def step_dropout(model: keras.Model, seed: int, step: tf.Variable) -> Iterator[None]:
    """Draw `model`'s dropout masks with StepDropoutMasks inside the block; Keras' generators come back after
    it, so the trained model saves and predicts as an ordinary one."""
    layers = [layer for layer in dropout_layers(model) if hasattr(layer, "_random_generator")]
    originals = [layer._random_generator for layer in layers]
    try:
        for index, layer in enumerate(layers):
            layer._random_generator = StepDropoutMasks(seed, step, index, len(layers))
        yield
    finally:
        for layer, original in zip(layers, originals):
            layer._random_generator = original


def train_attack_model(model: keras.Model, features: np.ndarray, is_member: np.ndarray,
                       context: AttackContext) -> keras.Model:
    """Train `model` in place with the recipe above; epoch e visits the samples in pass_order(n, seed, e)."""
    steps_per_epoch = int(np.ceil(len(is_member) / context.batch_size))
    trainer = TrainingModel(model, weight_decay=WEIGHT_DECAY)
    trainer.compile(optimizer=TorchSGD(step_schedule(context.epochs, steps_per_epoch), momentum=MOMENTUM))
    epochs = CompiledEpochs(trainer, (features.astype(np.float32), is_member.astype(np.int64)),
                            context.batch_size, seed=context.seed)
    with step_dropout(model, context.seed, trainer.optimizer.iterations):
        for epoch in range(context.epochs):
            logs = epochs.run_epoch(epoch)
            if context.verbose:
                logging.info("attack model %s epoch %d/%d: loss %.4f accuracy %.4f", model.name, epoch + 1,
                             context.epochs, logs["loss"], logs["accuracy"])
    return model


def member_probability(model: keras.Model, features: np.ndarray) -> np.ndarray:
    logits = model.predict(features.astype(np.float32), batch_size=4096, verbose=0)
    return tf.nn.softmax(tf.cast(logits, tf.float64), axis=-1).numpy()[:, 1]


def build_miafc(num_features: int, dropout: float = 0.2) -> keras.Model:
    """MIAFC (the authors' MLP): 512-ReLU-Drop-256-ReLU-Drop-128-ReLU-2, Xavier-normal, no input normalisation."""
    features = keras.Input(shape=(num_features,), name="features")
    h = features
    for index, units in enumerate((512, 256, 128)):
        h = keras.layers.Dense(units, activation="relu", kernel_initializer=xavier_normal(), name=f"fc{index}")(h)
        if index < 2:
            h = keras.layers.Dropout(dropout, name=f"dropout{index}")(h)
    logits = keras.layers.Dense(2, kernel_initializer=xavier_normal(), name="logits")(h)
    return keras.Model(features, logits, name="miafc")


class NeuralAttack(Attack):
    """An attack model on per-sample features of the signals; score = P(member)."""

    decision_threshold = 0.5

    def features(self, signals: Signals) -> np.ndarray:
        raise NotImplementedError

    def build(self, num_features: int, num_classes: int) -> keras.Model:
        return build_miafc(num_features)

    # Building, training and scoring trace the attack model (SAMIA's layer norms and GELUs are custom gradients);
    # none of those graphs is differentiated again afterwards, so what they registered goes when each returns.
    def fit(self, shadow: MembershipSet, reference=None) -> "NeuralAttack":
        set_seed(self.context.seed)
        features = self.features(shadow.signals)
        with unregistering_custom_gradients():
            self.model = self.build(features.shape[1], shadow.signals.num_classes)
            train_attack_model(self.model, features, shadow.is_member, self.context)
        return self

    def score(self, signals: Signals, reference=None) -> np.ndarray:
        with unregistering_custom_gradients():
            return member_probability(self.model, self.features(signals))


@ATTACKS.register("nn")
class PosteriorNN(NeuralAttack):
    """Shokri et al.'s NN attack as one attack model (not per class) on the full posterior p."""

    def features(self, signals):
        return signals.posteriors.astype(np.float32)


@ATTACKS.register("nn_top3")
class Top3NN(NeuralAttack):
    """Salem et al.'s ML-Leaks: the 3 largest posteriors, sorted descending (label-free)."""

    def features(self, signals):
        top = -np.sort(-signals.posteriors, axis=1)[:, :3]
        if top.shape[1] < 3:  # fewer than 3 classes: pad so the feature width is fixed
            top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])))
        return top.astype(np.float32)


@ATTACKS.register("nn_cls")
class PosteriorClassNN(NeuralAttack):
    """Nasr et al.-style (simplified, single MLP): [p, onehot(y)]."""

    def features(self, signals):
        return np.concatenate([signals.posteriors, signals.one_hot()], axis=1).astype(np.float32)
