"""PPB, pair-based posterior balancing (Yuan & Zhang 2022): CE + lambda * KL(Q || P) between the ranked softmax vectors
of the two halves of each minibatch, P = first half, Q = second half, pairs (i, i + m), m = floor(n / 2).

Ranking (sorting each logit vector) removes class identity, so the term pushes every member towards one common
confidence profile. Gradients flow through both P and Q, as PyTorch's kl_div does to its target. The KL is
computed from log-softmax, exact and unclipped like F.kl_div (Keras' KLDivergence would clip at 1e-7).
"""
from __future__ import annotations

from tfprune_mia.backend import keras, tf
from tfprune_mia.defenses.base import DEFENSES, Defense


def ppb_divergence(logits: tf.Tensor) -> tf.Tensor:
    """batchmean KL(Q || P) of the ranked posteriors; an odd batch's last sample is left out; 0 for n < 2."""
    half = tf.shape(logits)[0] // 2
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    log_p = tf.nn.log_softmax(ranked[:half], axis=-1)
    log_q = tf.nn.log_softmax(ranked[half:2 * half], axis=-1)
    total = tf.reduce_sum(tf.exp(log_q) * (log_q - log_p))
    return total / tf.cast(tf.maximum(half, 1), total.dtype)


@keras.utils.register_keras_serializable(package="tfprune_mia")
class PPBLoss(keras.losses.Loss):
    """PPB as a Keras loss on (labels, logits): per-sample CE plus the batch's lambda * KL, so the mean over the
    batch is CE + lambda * KL. Order-dependent by design: pairs are the batch's halves as shuffled."""

    def __init__(self, strength: float = 4.0, name: str = "ppb", **kwargs):
        super().__init__(name=name, **kwargs)
        self.strength = float(strength)

    def call(self, y_true, y_pred):
        cross_entropy = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        return cross_entropy + self.strength * ppb_divergence(y_pred)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


class PPBTerm:
    """The PPB term alone, for TrainingModel's loss_terms (CE is already the classification loss)."""

    def __init__(self, strength: float):
        self.strength = float(strength)

    def __call__(self, x, y, logits):
        return self.strength * ppb_divergence(logits)


@DEFENSES.register("ppb")
class PPB(Defense):
    default_strength = 4.0  # prune.py / mia.py / README default (16 in the first commit)

    def hooks(self, context):
        return [PPBTerm(self.config.strength)]
