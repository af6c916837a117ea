"""VGG-16 with BatchNorm (configuration "D"), the CIFAR variant of the paper's `cifar10_models` (Yuan & Zhang 2022)."""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import conv_bn_relu, dense
from tfprune_mia.models.resnet import check_image_shape

# Convolution widths per stage; each stage ends with a 2x2 max-pool.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CLASSIFIER_WIDTH = 4096
DROPOUT = 0.5


@register("vgg16_bn", "VGG-16-BN (config D, conv3x3+BN+ReLU, five max-pools, GAP, FC 4096-4096-C with dropout "
                      "0.5; Yuan & Zhang 2022); intended for 32x32x3, needs images >= 32x32")
def vgg16_bn(input_shape, num_classes) -> keras.Model:
    check_image_shape(input_shape, "vgg16_bn")
    min_side = 2 ** len(VGG16_STAGES)
    if min(input_shape[:2]) < min_side:
        raise ConfigError(f"vgg16_bn halves the image {len(VGG16_STAGES)} times and needs at least "
                          f"{min_side}x{min_side} pixels, got {tuple(input_shape)}; use resnet18 or small_cnn "
                          f"for smaller images")
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    for stage, widths in enumerate(VGG16_STAGES, start=1):
        for index, filters in enumerate(widths, start=1):
            suffix = f"{stage}_{index}"
            h = conv_bn_relu(h, filters, 3, (f"conv{suffix}", f"bn{suffix}", f"relu{suffix}"), use_bias=True)
        h = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(h)
    # AdaptiveAvgPool2d(1) is a global mean whatever the remaining spatial size (1x1 for 32x32 inputs).
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    for index in (1, 2):
        h = dense(CLASSIFIER_WIDTH, f"fc{index}")(h)
        h = keras.layers.ReLU(name=f"fc{index}.relu")(h)
        h = keras.layers.Dropout(DROPOUT, name=f"fc{index}.dropout")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="vgg16_bn")
