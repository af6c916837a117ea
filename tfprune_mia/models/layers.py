"""Layer factories with the authors' initialisation and PyTorch-equivalent BatchNorm (docs/paper_map.md, "Models")."""
from __future__ import annotations

from typing import Optional, Sequence

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


def conv_bn_relu(h, filters: int, kernel_size, names: Sequence[str], strides=1, padding: str = "same",
                 use_bias: bool = False, relu_max: Optional[float] = None):
    """Conv -> BN -> ReLU, the block every CNN here repeats. `names` = (conv, bn, relu) layer names, or (conv, bn)
    for no activation (MobileNetV2's linear bottleneck); `relu_max=6.0` gives ReLU6."""
    conv_name, bn_name, *relu_name = names
    h = conv2d(filters, kernel_size, conv_name, strides=strides, padding=padding, use_bias=use_bias)(h)
    h = batch_norm(bn_name)(h)
    if relu_name:
        h = keras.layers.ReLU(max_value=relu_max, name=relu_name[0])(h)
    return h
