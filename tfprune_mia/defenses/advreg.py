"""Adversarial regularisation, Nasr et al.'s min-max game (Nasr et al., CCS 2018).

An inference model h on [softmax(f(x)), onehot(y)] (Nasr et al.'s network: probability branch 1024-512-64, label
branch 128-64, combiner 512-256-128-64-1) learns to tell members (label 1) from reference
non-members (label 0); the classifier then minimises CE + theta * mean_B log h(f(x), y) -- the same as the
reference code's CE - theta * CE(h, member) -- pushing h's member score on its own training batch down.

Modes: `proper` runs k inference-model steps before every classifier step over the whole epoch; `as_coded`
reproduces the authors' code: k = 7 inference steps then ONE classifier step per "epoch", and theta also
multiplies h's loss. Both draw member batches from the model's training split and reference batches from the
reference set, through reshuffled endless streams.

Reference set = the model's dev split (as in the authors' code; for a shadow, the shadow's own dev split). It is
disjoint from the members (train) and from the attack-evaluation non-members (test) by construction of the
split, which `check_reference_set` asserts: the evaluation never scores a record h was trained on as a
non-member, and members never serve as references. The same dev records also drive early stopping; that reuse
touches no member and no evaluation record, so it biases neither side of the privacy measurement.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.defenses.base import DEFENSES, Defense, DefenseContext
from tfprune_mia.errors import ConfigError
from tfprune_mia.models.layers import xavier_normal
from tfprune_mia.options import Options
from tfprune_mia.training import TrainingHook, apply_gradients

H_LEARNING_RATE = 1e-3
H_WEIGHT_DECAY = 5e-4  # the authors' code: Adam (lr 1e-3, wd 5e-4), coupled as everywhere in this package


def build_inference_model(num_classes: int) -> keras.Model:
    """Nasr's two-branch attack model; outputs the member logit (sigmoid = P(member)).

    Initialisation deviates from Nasr's N(0, 0.01^2): through 7-8 layers it shrinks the input's effect on the
    output to ~1e-6, and h stayed at loss ln 2 (chance) for the first 60 steps on digits -- a game whose
    adversary never starts. Xavier-normal, the package's default, trains from the first steps.
    """

    def dense(units, name, activation="relu"):
        return keras.layers.Dense(units, activation=activation, kernel_initializer=xavier_normal(),
                                  bias_initializer="zeros", name=name)

    probs = keras.Input(shape=(num_classes,), name="posterior")
    labels = keras.Input(shape=(num_classes,), name="one_hot")
    h = probs
    for i, units in enumerate((1024, 512, 64)):
        h = dense(units, f"prob{i}")(h)
    g = labels
    for i, units in enumerate((128, 64)):
        g = dense(units, f"label{i}")(g)
    z = keras.layers.Concatenate(name="combine")([h, g])
    for i, units in enumerate((512, 256, 128, 64)):
        z = dense(units, f"combiner{i}")(z)
    logit = dense(1, "member_logit", activation=None)(z)
    return keras.Model([probs, labels], logit, name="inference_model")


def check_reference_set(context: DefenseContext) -> None:
    """The reference non-members must not overlap the members or the evaluation non-members."""
    if context.reference_index is None:
        return
    for other, what in ((context.member_index, "members (train)"),
                        (context.evaluation_index, "attack-evaluation non-members (test)")):
        if other is not None and np.intersect1d(context.reference_index, other).size:
            raise ConfigError(f"the adversarial-regularisation reference set overlaps the {what}; use a split "
                              "whose dev part is disjoint from train and test (delete the split file and re-run)")


def _stream(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return iter(data.repeat().batch(batch_size, drop_remainder=len(y) >= batch_size))


class AdversarialRegularisation(TrainingHook):
    """The min-max game as a training hook: h's k steps in before_step, the privacy term as the loss term.

    The inference model persists across every TrainingModel the hook is attached to (ADMM's W-steps, then masked
    retraining), as in MCMIA's pseudo-code. With active_with_masks=False the game pauses in trainings that hold
    masks (MCMIA's masked retraining, the ablation C of docs/deviations.md).
    """

    def __init__(self, strength: float, steps: int, mode: str, members: Tuple[np.ndarray, np.ndarray],
                 reference: Tuple[np.ndarray, np.ndarray], num_classes: int, batch_size: int, seed: int,
                 active_with_masks: bool = True):
        if len(reference[1]) == 0:
            raise ConfigError("adversarial regularisation needs a non-empty reference set (the dev split)")
        self.strength = float(strength)
        self.steps = int(steps)
        self.mode = mode
        self.members, self.reference = members, reference
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = seed
        self.active_with_masks = active_with_masks
        self.steps_per_epoch = 1 if mode == "as_coded" else None
        # The authors' code scales h's loss by theta too; Nasr's algorithm does not.
        self.h_loss_scale = self.strength if mode == "as_coded" else 1.0
        self.inference_model = build_inference_model(num_classes)
        self.h_optimizer = keras.optimizers.Adam(learning_rate=H_LEARNING_RATE)
        self.h_optimizer.build(self.inference_model.trainable_variables)
        self.net: Optional[keras.Model] = None
        self.active = True
        self.attachments = 0

    def attach(self, model):
        self.net = model.net
        self.active = self.active_with_masks or not model.mask_pairs
        seed = self.seed + 1000 * self.attachments
        self.attachments += 1
        self.member_stream = _stream(*self.members, self.batch_size, seed)
        self.reference_stream = _stream(*self.reference, self.batch_size, seed + 1)

    def features(self, logits, y):
        return [tf.nn.softmax(logits, axis=-1), tf.one_hot(tf.cast(y, tf.int32), self.num_classes)]

    def inference_loss(self, member_logits, member_y, reference_logits, reference_y) -> tf.Tensor:
        """-G(h; f): binary CE of h with members labelled 1 and references 0, the two halves weighted equally."""
        member = self.inference_model(self.features(member_logits, member_y), training=True)
        reference = self.inference_model(self.features(reference_logits, reference_y), training=True)
        bce = keras.losses.binary_crossentropy
        return 0.5 * (tf.reduce_mean(bce(tf.ones_like(member), member, from_logits=True))
                      + tf.reduce_mean(bce(tf.zeros_like(reference), reference, from_logits=True)))

    def inference_step(self) -> tf.Tensor:
        xm, ym = next(self.member_stream)
        xr, yr = next(self.reference_stream)
        # f is frozen and in inference mode while h trains.
        member_logits = tf.stop_gradient(self.net(xm, training=False))
        reference_logits = tf.stop_gradient(self.net(xr, training=False))
        variables = self.inference_model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.h_loss_scale * self.inference_loss(member_logits, ym, reference_logits, yr)
        gradients = tape.gradient(loss, variables)
        gradients = [g + H_WEIGHT_DECAY * v for g, v in zip(gradients, variables)]
        apply_gradients(self.h_optimizer, gradients, variables)
        return loss

    def before_step(self, x, y):
        if self.active:
            for _ in range(self.steps):
                self.inference_step()

    def __call__(self, x, y, logits):
        if not self.active:
            return tf.constant(0.0)
        # h is frozen here: its variables are not among the classifier's, so only f receives this gradient.
        member_logit = self.inference_model(self.features(logits, y), training=False)
        return self.strength * tf.reduce_mean(tf.math.log_sigmoid(member_logit))


ADV_MODES = ("proper", "as_coded")


@dataclasses.dataclass(frozen=True)
class AdvOptions(Options):
    """The min-max game: `proper` = k inference steps before every classifier step over the whole epoch (Nasr et
    al.); `as_coded` = the authors' code, k steps then ONE classifier step per epoch. steps = k."""

    flag_prefix = "adv"
    mode: str = "proper"
    steps: int = 7

    def validate(self):
        if self.mode not in ADV_MODES:
            raise ConfigError(f"unknown adv_mode {self.mode!r}; choose one of: {', '.join(ADV_MODES)}")
        if self.steps < 1:
            raise ConfigError(f"adv_steps={self.steps}: the inference model needs at least 1 step (Nasr et al.: 7)")

    def key_parts(self):
        return [self.mode, f"k{self.steps}"]  # always written: the key says which game ran


@DEFENSES.register("adv")
class AdvReg(Defense):
    default_strength = 4.0  # Nasr et al.'s lambda as the pruning paper's code sets it
    options_class = AdvOptions
    # The inference model trains inside each classifier step on host-side batch streams, which replicas
    # cannot share.
    strategy_refusal = "its inference model trains on host-side batch streams inside each step"

    def make_hook(self, context: DefenseContext, active_with_masks: bool = True) -> AdversarialRegularisation:
        check_reference_set(context)
        return AdversarialRegularisation(self.config.strength, self.options.steps, self.options.mode,
                                         context.members, context.reference, context.num_classes,
                                         context.train_config.batch_size, context.seed, active_with_masks)

    def hooks(self, context):
        return [self.make_hook(context)]
