"""Small CNN for digits / Fashion-MNIST: conv-BN-ReLU blocks so every pruner (filter, slimming) applies."""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import conv_bn_relu, dense


@register("small_cnn", "2x(conv3x3-BN-ReLU) blocks of 32/64 filters with max-pool, FC 128, for small images")
def small_cnn(input_shape, num_classes) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    for block, filters in enumerate((32, 64), start=1):
        h = conv_bn_relu(h, filters, 3, (f"conv{block}", f"bn{block}", f"relu{block}"))
        h = keras.layers.MaxPooling2D(2, name=f"pool{block}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense(128, "fc1", activation="relu")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="small_cnn")
