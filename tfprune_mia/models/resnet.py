"""CIFAR ResNet-18 of the paper's `cifar10_models` (Yuan & Zhang 2022).

Layer names follow the PyTorch module paths (`layer2.0.conv1`, `layer2.0.shortcut.bn`, ...) so that weights and
pruning configs can be mapped one-to-one, and so that a structured pruner can read the block structure from the
names as well as from the graph.
"""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import batch_norm, conv2d, conv_bn_relu, dense

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


def check_image_shape(input_shape, model_name: str) -> None:
    if len(input_shape) != 3:
        raise ConfigError(f"{model_name} needs an image input shape (height, width, channels), "
                          f"got {tuple(input_shape)}")


def conv3x3_torch(h, filters: int, name: str, strides: int = 1, use_bias: bool = False):
    """A 3x3 conv with PyTorch's padding=1.

    For stride 1 Keras 'same' pads 1 on every side, which is the same thing. For stride 2 on an even input 'same'
    pads only bottom/right, shifting the sampling grid by one pixel relative to PyTorch, so pad explicitly.
    """
    if strides == 1:
        return conv2d(filters, 3, name, padding="same", use_bias=use_bias)(h)
    h = keras.layers.ZeroPadding2D(1, name=f"{name}.pad")(h)
    return conv2d(filters, 3, name, strides=strides, padding="valid", use_bias=use_bias)(h)


def max_pool_3x3_s2_p1(h, name: str):
    """PyTorch MaxPool2d(3, stride=2, padding=1), which pads with -inf.

    Only ever applied after a ReLU, so the input is >= 0 and zero padding picks the same maxima as -inf padding.
    """
    h = keras.layers.ZeroPadding2D(1, name=f"{name}.pad")(h)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(h)


def basic_block(h, filters: int, strides: int, name: str):
    in_channels = h.shape[-1]
    out = conv3x3_torch(h, filters, f"{name}.conv1", strides=strides)
    out = batch_norm(f"{name}.bn1")(out)
    out = keras.layers.ReLU(name=f"{name}.relu1")(out)
    out = conv3x3_torch(out, filters, f"{name}.conv2")
    out = batch_norm(f"{name}.bn2")(out)
    if strides != 1 or in_channels != filters:
        # 1x1 with padding 0: 'valid' samples the same even positions as PyTorch for any input size.
        shortcut = conv2d(filters, 1, f"{name}.shortcut.conv", strides=strides, padding="valid",
                          use_bias=False)(h)
        shortcut = batch_norm(f"{name}.shortcut.bn")(shortcut)
    else:
        shortcut = h
    out = keras.layers.Add(name=f"{name}.add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}.relu2")(out)


@register("resnet18", "CIFAR ResNet-18: conv3x3 stem + max-pool, BasicBlocks [2,2,2,2] of 64-128-256-512, "
                      "GAP, FC (Yuan & Zhang 2022); intended for 32x32x3, works for any image >= 8x8 (e.g. 28x28x1)")
def resnet18(input_shape, num_classes) -> keras.Model:
    check_image_shape(input_shape, "resnet18")
    inputs = keras.Input(shape=input_shape, name="input")
    h = conv_bn_relu(inputs, 64, 3, ("conv1", "bn1", "relu"))
    # The paper's variant keeps torchvision's stem max-pool, so a 32x32 input is 16x16 entering layer1.
    h = max_pool_3x3_s2_p1(h, "maxpool")
    for stage, (filters, blocks) in enumerate(zip(STAGE_WIDTHS, BLOCKS_PER_STAGE), start=1):
        for block in range(blocks):
            strides = 2 if stage > 1 and block == 0 else 1
            h = basic_block(h, filters, strides, f"layer{stage}.{block}")
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="resnet18")
