"""Layer factories with the spec's initialisation and PyTorch-equivalent BatchNorm (spec §3.1, §11)."""
from __future__ import annotations

from tfprune_mia.backend import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def xavier_normal() -> keras.initializers.Initializer:
    """Untruncated Xavier-normal, as torch.nn.init.xavier_normal_ (Keras' glorot_normal is truncated)."""
    return keras.initializers.VarianceScaling(1.0, mode="fan_avg", distribution="untruncated_normal")


def dense(units: int, name: str, activation=None, use_bias: bool = True) -> keras.layers.Dense:
    return keras.layers.Dense(units, activation=activation, use_bias=use_bias, name=name,
                              kernel_initializer=xavier_normal(), bias_initializer="zeros")


def conv2d(filters: int, kernel_size, name: str, strides=1, padding: str = "same",
           use_bias: bool = True) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                               name=name, kernel_initializer=xavier_normal(), bias_initializer="zeros")


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                           gamma_initializer="ones", beta_initializer="zeros")
