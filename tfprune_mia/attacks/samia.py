"""SAMIA (Yuan & Zhang 2022): a Transformer encoder over class tokens (p_k, s_k, onehot_k), trained on shadow signals.

Self-attention runs across the C class tokens; there is no positional encoding, so class identity enters
only through the one-hot channel and the position-specific weights of the dense layer after flattening.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from tfprune_mia.attacks.base import ATTACKS
from tfprune_mia.attacks.neural import NeuralAttack
from tfprune_mia.attacks.signals import Signals
from tfprune_mia.backend import keras, tf
from tfprune_mia.models.layers import BN_EPSILON, BN_MOMENTUM, xavier_normal

LAYER_NORM_EPSILON = 1e-5


@keras.utils.register_keras_serializable(package="tfprune_mia")
class ClassTokens(keras.layers.Layer):
    """[batch, k*C] features made of k per-class chunks -> [batch, C, k] tokens, token c = chunk values at c."""

    def __init__(self, num_chunks: int, **kwargs):
        super().__init__(**kwargs)
        self.num_chunks = num_chunks

    def call(self, features):
        num_classes = features.shape[-1] // self.num_chunks
        chunks = tf.reshape(features, (-1, self.num_chunks, num_classes))
        return tf.transpose(chunks, (0, 2, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] // self.num_chunks, self.num_chunks)

    def get_config(self):
        return {**super().get_config(), "num_chunks": self.num_chunks}


@keras.utils.register_keras_serializable(package="tfprune_mia")
class TokenAttention(keras.layers.MultiHeadAttention):
    """Keras' MultiHeadAttention (same weights, same arithmetic) with the attention core written as head-major
    transposes and plain batched matmuls.

    Keras computes the scores and the context with `tf.einsum`, which on CPU lays each operand out anew
    (transposes in, transposes out) and does so again in each einsum of the backward pass. With SAMIA's tiny
    per-head matrices (10 tokens x 16 dims) those copies cost more than the products: moving q, k, v to
    [batch, heads, tokens, dims] once and letting the matmuls' transpose flags do the rest made a SAMIA
    training epoch ~9% cheaper (benchmarks/attack_training.py).
    """

    def _compute_attention(self, query, key, value, attention_mask=None, training=None):
        if attention_mask is not None or len(self._attention_axes) != 1:
            return super()._compute_attention(query, key, value, attention_mask, training)
        # The query scaled before the product, as Keras does, so the scores are bit-identical.
        query = tf.multiply(query, 1.0 / math.sqrt(float(self._key_dim)))
        heads_first = (0, 2, 1, 3)  # [batch, tokens, heads, dims] <-> [batch, heads, tokens, dims]
        scores = tf.matmul(tf.transpose(query, heads_first), tf.transpose(key, heads_first), transpose_b=True)
        scores = self._masked_softmax(scores)
        dropped = self._dropout_layer(scores, training=training)
        context = tf.matmul(dropped, tf.transpose(value, heads_first))
        return tf.transpose(context, heads_first), scores


@contextlib.contextmanager
def keras_attention_core():
    """Inside the block TokenAttention computes with Keras' own einsum core: the reference that benchmarks
    and equivalence tests compare it with."""
    TokenAttention._compute_attention = keras.layers.MultiHeadAttention._compute_attention
    try:
        yield
    finally:
        del TokenAttention._compute_attention


@keras.utils.register_keras_serializable(package="tfprune_mia")
class PostNormEncoderLayer(keras.layers.Layer):
    """PyTorch's TransformerEncoderLayer (norm_first=False): x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))."""

    def __init__(self, d_model: int = 64, num_heads: int = 4, ffn_dim: int = 128, dropout: float = 0.2,
                 **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.ffn_dim, self.dropout = d_model, num_heads, ffn_dim, dropout
        self.attention = TokenAttention(num_heads, d_model // num_heads, dropout=dropout,
                                        name="attention")
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.norm1 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm1")
        self.ffn_in = keras.layers.Dense(ffn_dim, activation="gelu", kernel_initializer=xavier_normal(),
                                         name="ffn_in")
        self.ffn_dropout = keras.layers.Dropout(dropout)
        self.ffn_out = keras.layers.Dense(d_model, kernel_initializer=xavier_normal(), name="ffn_out")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.norm2 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm2")

    def call(self, tokens, training=None):
        attended = self.attention(tokens, tokens, training=training)
        tokens = self.norm1(tokens + self.attention_dropout(attended, training=training))
        hidden = self.ffn_out(self.ffn_dropout(self.ffn_in(tokens), training=training))
        return self.norm2(tokens + self.output_dropout(hidden, training=training))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout}


def build_samia(num_classes: int, num_chunks: int = 3, d_model: int = 64, num_heads: int = 4,
                ffn_dim: int = 128, num_layers: int = 3, dropout: float = 0.2) -> keras.Model:
    features = keras.Input(shape=(num_chunks * num_classes,), name="features")
    h = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="input_norm")(features)
    h = ClassTokens(num_chunks, name="class_tokens")(h)
    h = keras.layers.Dense(d_model, activation="gelu", kernel_initializer=xavier_normal(), name="embed")(h)
    for index in range(num_layers):
        h = PostNormEncoderLayer(d_model, num_heads, ffn_dim, dropout, name=f"encoder{index}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", kernel_initializer=xavier_normal(), name="fc")(h)
    logits = keras.layers.Dense(2, kernel_initializer=xavier_normal(), name="logits")(h)
    return keras.Model(features, logits, name="samia")


def samia_features(signals: Signals, with_sensitivity: bool = True) -> np.ndarray:
    """[p (C), s (C), onehot(y) (C)] in exactly this order (the chunks the class tokens are cut from)."""
    chunks = [signals.posteriors]
    if with_sensitivity:
        chunks.append(signals.sensitivity)
    chunks.append(signals.one_hot())
    return np.concatenate(chunks, axis=1).astype(np.float32)


@ATTACKS.register("samia")
class SAMIA(NeuralAttack):
    with_sensitivity = True

    def features(self, signals):
        return samia_features(signals, self.with_sensitivity)

    def build(self, num_features, num_classes):
        return build_samia(num_classes, num_chunks=3 if self.with_sensitivity else 2)


@ATTACKS.register("samia_nosens")
class SAMIANoSensitivity(SAMIA):
    """Ablation (ours): SAMIA without the sensitivity chunk, tokens (p_k, onehot_k). It needs one query
    per sample instead of 11 (no off-manifold perturbed inputs), so it measures what sensitivity adds."""

    with_sensitivity = False


@ATTACKS.register("samia_mlp")
class SAMIAFeaturesMLP(NeuralAttack):
    """Ablation (unused in the authors' code): SAMIA's features [p, s, onehot] into MIAFC instead of the Transformer,
    separating the contribution of the features from that of self-attention across classes."""

    def features(self, signals):
        return samia_features(signals, with_sensitivity=True)
