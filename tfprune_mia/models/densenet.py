"""CIFAR DenseNet-121 (DenseNet-BC) of the paper's `cifar10_models` (Yuan & Zhang 2022).

Names mirror the PyTorch module paths (`denseblock2.denselayer5.conv1`, `transition2.conv`, `norm5`). Each dense
layer ends in a Concatenate of its input and its 32 new channels, so a channel pruner can see which input
channels of every later 1x1 conv come from which producing layer.
"""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import batch_norm, conv2d, conv_bn_relu, dense
from tfprune_mia.models.resnet import check_image_shape, max_pool_3x3_s2_p1

GROWTH_RATE = 32
BLOCK_LAYERS = (6, 12, 24, 16)
INIT_FEATURES = 2 * GROWTH_RATE
BN_SIZE = 4
COMPRESSION = 0.5


def dense_layer(h, name: str):
    out = batch_norm(f"{name}.norm1")(h)
    out = keras.layers.ReLU(name=f"{name}.relu1")(out)
    out = conv2d(BN_SIZE * GROWTH_RATE, 1, f"{name}.conv1", padding="valid", use_bias=False)(out)
    out = batch_norm(f"{name}.norm2")(out)
    out = keras.layers.ReLU(name=f"{name}.relu2")(out)
    out = conv2d(GROWTH_RATE, 3, f"{name}.conv2", padding="same", use_bias=False)(out)
    return keras.layers.Concatenate(name=f"{name}.concat")([h, out])


def transition(h, name: str):
    out_channels = int(h.shape[-1] * COMPRESSION)
    h = batch_norm(f"{name}.norm")(h)
    h = keras.layers.ReLU(name=f"{name}.relu")(h)
    h = conv2d(out_channels, 1, f"{name}.conv", padding="valid", use_bias=False)(h)
    # AvgPool2d(2, 2) floors odd sizes, as does Keras 'valid'.
    return keras.layers.AveragePooling2D(2, name=f"{name}.pool")(h)


@register("densenet121", "CIFAR DenseNet-121 (growth 32, blocks 6-12-24-16, bn_size 4, compression 0.5, conv3x3 "
                         "stem + max-pool; Yuan & Zhang 2022); intended for 32x32x3, works for images >= 16x16")
def densenet121(input_shape, num_classes) -> keras.Model:
    check_image_shape(input_shape, "densenet121")
    inputs = keras.Input(shape=input_shape, name="input")
    h = conv_bn_relu(inputs, INIT_FEATURES, 3, ("conv0", "norm0", "relu0"))
    h = max_pool_3x3_s2_p1(h, "pool0")
    for block, layers in enumerate(BLOCK_LAYERS, start=1):
        for layer in range(1, layers + 1):
            h = dense_layer(h, f"denseblock{block}.denselayer{layer}")
        if block != len(BLOCK_LAYERS):
            h = transition(h, f"transition{block}")
    h = batch_norm("norm5")(h)
    h = keras.layers.ReLU(name="relu5")(h)
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="densenet121")
