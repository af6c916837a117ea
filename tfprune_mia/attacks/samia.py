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
class PostNormEncoderLayer(keras.layers.Layer):
    """PyTorch's TransformerEncoderLayer (norm_first=False): x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))."""

    keras_reference = False  # keras_reference_layers() sets it

    def __init__(self, d_model: int = 64, num_heads: int = 4, ffn_dim: int = 128, dropout: float = 0.2,
                 **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.ffn_dim, self.dropout = d_model, num_heads, ffn_dim, dropout
        self.attention = keras.layers.MultiHeadAttention(num_heads, d_model // num_heads, dropout=dropout,
                                                         name="attention")
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.norm1 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm1")
        self.ffn_in = keras.layers.Dense(ffn_dim, activation="gelu", kernel_initializer=xavier_normal(),
                                         name="ffn_in")
        self.ffn_dropout = keras.layers.Dropout(dropout)
        self.ffn_out = keras.layers.Dense(d_model, kernel_initializer=xavier_normal(), name="ffn_out")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.norm2 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm2")

    def build(self, input_shape):
        # The sublayers hold the variables (so saved models keep their layout), but call() computes with
        # their kernels directly and never calls them: build them here, in the order and name scopes that
        # calling them would (same initial weights for a seed, same weight names).
        shape = tf.TensorShape(input_shape)
        attention = self.attention
        with tf.name_scope(attention.name):
            attention._build_from_signature(shape, shape)
            for dense in (attention._query_dense, attention._key_dense, attention._value_dense):
                with tf.name_scope(dense.name):
                    dense.build(shape)
            with tf.name_scope(attention._output_dense.name):
                attention._output_dense.build(shape[:-1].concatenate([attention._num_heads, attention._key_dim]))
        attention.built = True
        for layer, layer_shape in ((self.norm1, shape), (self.ffn_in, shape),
                                   (self.ffn_out, shape[:-1].concatenate([self.ffn_dim])), (self.norm2, shape)):
            with tf.name_scope(layer.name):
                layer.build(layer_shape)
        super().build(input_shape)

    def call(self, tokens, training=None):
        """The Keras composite below (keras_call) in fewer, larger ops, same function: Q, K and V as one
        [d, 3d] matmul (the query's 1/sqrt(key_dim) scale folded into its kernel and bias), one transpose to
        head-major for all three, the output projection as a plain matmul, and the layer norms and the GELU
        with hand-written gradients (layer_norm, gelu). Dropout goes through the same Keras Dropout layers,
        so StepDropoutMasks draws the same masks for both."""
        if self.keras_reference:
            return self.keras_call(tokens, training=training)
        attention = self.attention
        heads, head_dim = attention._num_heads, attention._key_dim
        batch, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
        rows = tf.reshape(tokens, [-1, self.d_model])
        scale = 1.0 / math.sqrt(float(head_dim))
        projections = (attention._query_dense, attention._key_dense, attention._value_dense)
        kernel = tf.concat([tf.reshape(dense.kernel, [self.d_model, heads * head_dim]) * factor
                            for dense, factor in zip(projections, (scale, 1.0, 1.0))], axis=1)
        bias = tf.concat([tf.reshape(dense.bias, [-1]) * factor
                          for dense, factor in zip(projections, (scale, 1.0, 1.0))], axis=0)
        qkv = tf.nn.bias_add(tf.matmul(rows, kernel), bias)
        # [batch*tokens, 3*heads*dims] -> [3, batch, heads, tokens, dims]
        qkv = tf.transpose(tf.reshape(qkv, [batch, length, 3, heads, head_dim]), (2, 0, 3, 1, 4))
        query, key, value = tf.unstack(qkv)
        scores = attention._masked_softmax(tf.matmul(query, key, transpose_b=True))
        context = tf.matmul(attention._dropout_layer(scores, training=training), value)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), [-1, heads * head_dim])
        output = attention._output_dense
        attended = tf.nn.bias_add(tf.matmul(context, tf.reshape(output.kernel, [heads * head_dim, self.d_model])),
                                  output.bias)
        rows = layer_norm(rows + self.attention_dropout(attended, training=training), self.norm1.gamma,
                          self.norm1.beta, LAYER_NORM_EPSILON)
        hidden = gelu(tf.nn.bias_add(tf.matmul(rows, self.ffn_in.kernel), self.ffn_in.bias))
        hidden = tf.nn.bias_add(tf.matmul(self.ffn_dropout(hidden, training=training), self.ffn_out.kernel),
                                self.ffn_out.bias)
        rows = layer_norm(rows + self.output_dropout(hidden, training=training), self.norm2.gamma,
                          self.norm2.beta, LAYER_NORM_EPSILON)
        return tf.reshape(rows, [batch, length, self.d_model])

    def keras_call(self, tokens, training=None):
        """The same layer from Keras' own layers: the reference call() is checked against, and what the
        attacks trained with before (benchmarks/attack_training.py)."""
        attended = self.attention(tokens, tokens, training=training)
        tokens = self.norm1(tokens + self.attention_dropout(attended, training=training))
        hidden = self.ffn_out(self.ffn_dropout(self.ffn_in(tokens), training=training))
        return self.norm2(tokens + self.output_dropout(hidden, training=training))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout}


def layer_norm(rows, gamma, beta, epsilon):
    """keras.layers.LayerNormalization over the last axis of [rows, features], with its gradient written out.

    Keras 2 takes its fused kernel only for epsilon >= 1.001e-5 (PyTorch's and SAMIA's 1e-5 is below), and the
    unfused path and its autodiff gradient are ~30 small ops per norm; this is 9 forward and 11 backward."""
    gamma, beta = tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta)

    @tf.custom_gradient
    def normalise(rows, gamma, beta):
        centred = rows - tf.reduce_mean(rows, axis=-1, keepdims=True)
        inverse_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True) + epsilon)
        normed = centred * inverse_std

        def gradient(upstream):
            scaled = upstream * gamma
            # d normed / d rows removes the mean and the component along normed (the row's own scale)
            rows_gradient = inverse_std * (scaled - tf.reduce_mean(scaled, axis=-1, keepdims=True)
                                           - normed * tf.reduce_mean(scaled * normed, axis=-1, keepdims=True))
            return rows_gradient, tf.reduce_sum(upstream * normed, axis=0), tf.reduce_sum(upstream, axis=0)

        return normed * gamma + beta, gradient

    return normalise(rows, gamma, beta)


@tf.custom_gradient
def gelu(inputs):
    """Exact (erf) GELU, keras.activations.gelu's function, with its derivative Phi(x) + x*phi(x) as the
    gradient: 3 ops instead of autodiff's ~8 through erf."""
    cdf = 0.5 * (1.0 + tf.math.erf(inputs * (1.0 / math.sqrt(2.0))))

    def gradient(upstream):
        return upstream * (cdf + inputs * tf.exp(-0.5 * tf.square(inputs)) * (1.0 / math.sqrt(2.0 * math.pi)))

    return inputs * cdf, gradient


@contextlib.contextmanager
def keras_reference_layers():
    """Inside the block SAMIA's encoder layers compute with Keras' own layers (PostNormEncoderLayer.keras_call):
    the reference that benchmarks and equivalence tests compare the current layers with."""
    PostNormEncoderLayer.keras_reference = True
    try:
        yield
    finally:
        PostNormEncoderLayer.keras_reference = False


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
