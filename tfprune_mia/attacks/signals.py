"""Per-sample signals, the only thing attacks see (spec §5.1): posteriors, per-class sensitivities, labels.

Sensitivity s_k(x) = mean_j |softmax(f(x + eps*u_j))_k - p_k(x)| / eps over m Gaussian directions u_j, in
normalised input space. The m perturbed copies of a batch go through the model as one tiled batch, in float32
with TF32 off (backend), and the noise is drawn from a seeded stateless generator so signals are reproducible.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import read_npz, write_npz

LOG_FLOOR = 1e-30


@dataclasses.dataclass(frozen=True)
class SignalConfig:
    num_perturbations: int = 10
    epsilon: float = 1e-3
    noise_seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if self.num_perturbations < 1 or not self.epsilon > 0:
            raise ConfigError("signals need num_perturbations >= 1 and epsilon > 0")


@dataclasses.dataclass(frozen=True)
class Signals:
    posteriors: np.ndarray  # [n, C] softmax outputs
    sensitivity: np.ndarray  # [n, C]
    labels: np.ndarray  # [n] ground-truth classes

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return self.posteriors.shape[1]

    @property
    def true_class_confidence(self) -> np.ndarray:
        return self.posteriors[np.arange(len(self)), self.labels]

    @property
    def true_class_sensitivity(self) -> np.ndarray:
        return self.sensitivity[np.arange(len(self)), self.labels]

    @property
    def losses(self) -> np.ndarray:
        return -np.log(np.maximum(self.true_class_confidence, LOG_FLOOR))

    @property
    def correct(self) -> np.ndarray:
        return np.argmax(self.posteriors, axis=1) == self.labels

    def one_hot(self) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[self.labels]

    def subset(self, index) -> "Signals":
        return Signals(self.posteriors[index], self.sensitivity[index], self.labels[index])

    @staticmethod
    def concat(parts: Sequence["Signals"]) -> "Signals":
        return Signals(np.concatenate([p.posteriors for p in parts]),
                       np.concatenate([p.sensitivity for p in parts]),
                       np.concatenate([p.labels for p in parts]))

    def save(self, path: Path) -> None:
        write_npz(path, posteriors=self.posteriors, sensitivity=self.sensitivity, labels=self.labels)

    @staticmethod
    def load(path: Path) -> "Signals":
        data = read_npz(path)
        return Signals(data["posteriors"], data["sensitivity"], data["labels"])


@dataclasses.dataclass(frozen=True)
class MembershipSet:
    """Signals of members and non-members of one or more models, with the ground truth (1 = member)."""

    signals: Signals
    is_member: np.ndarray

    @staticmethod
    def from_parts(members: Signals, non_members: Signals) -> "MembershipSet":
        labels = np.concatenate([np.ones(len(members), np.int64), np.zeros(len(non_members), np.int64)])
        return MembershipSet(Signals.concat([members, non_members]), labels)

    @staticmethod
    def concat(parts: Sequence["MembershipSet"]) -> "MembershipSet":
        return MembershipSet(Signals.concat([p.signals for p in parts]),
                             np.concatenate([p.is_member for p in parts]))


def compute_signals(net: keras.Model, x: np.ndarray, y: np.ndarray, config: SignalConfig = SignalConfig()
                    ) -> Signals:
    m, eps = config.num_perturbations, config.epsilon

    @tf.function(reduce_retracing=True)
    def batch_signals(batch, seed):
        probs = tf.nn.softmax(tf.cast(net(batch, training=False), tf.float32))
        tiled = tf.tile(batch, tf.concat([[m], tf.ones(tf.rank(batch) - 1, tf.int32)], axis=0))
        noise = tf.random.stateless_normal(tf.shape(tiled), seed=seed, dtype=batch.dtype)
        perturbed = tf.nn.softmax(tf.cast(net(tiled + eps * noise, training=False), tf.float32))
        perturbed = tf.reshape(perturbed, [m, -1, tf.shape(probs)[1]])
        sensitivity = tf.reduce_mean(tf.abs(perturbed - probs[None]), axis=0) / eps
        return probs, sensitivity

    x = np.asarray(x, np.float32)
    posteriors, sensitivities = [], []
    for index, start in enumerate(range(0, len(x), config.batch_size)):
        seed = tf.constant([config.noise_seed, index], tf.int64)
        probs, sens = batch_signals(tf.constant(x[start:start + config.batch_size]), seed)
        posteriors.append(probs.numpy())
        sensitivities.append(sens.numpy())
    num_classes = net.output_shape[-1]
    empty = np.zeros((0, num_classes), np.float32)
    return Signals(np.concatenate(posteriors) if posteriors else empty,
                   np.concatenate(sensitivities) if sensitivities else empty, np.asarray(y, np.int64))
