"""CIFAR MobileNetV2, as in the paper's `cifar10_models` (one of MCMIA's CIFAR models).

The CIFAR adaptation keeps ImageNet's layout but uses stride 1 in the stem conv and in the (6, 24, 2, .) stage,
so a 32x32 input is still 4x4 at the last conv. Block `blockN` corresponds to PyTorch's `features.N`.

Depthwise kernels are keras DepthwiseConv2D with the package's Xavier-normal. PyTorch computes the fans of a
depthwise weight (C, 1, 3, 3) as fan_in=9, fan_out=9C; Keras sees the kernel (3, 3, C, 1) as fan_in=9C,
fan_out=9. The two are swapped, but 'fan_avg' only uses their sum, so the std is the same as PyTorch's.
"""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import batch_norm, conv_bn_relu, dense, xavier_normal
from tfprune_mia.models.resnet import check_image_shape

# (expansion t, output channels c, repeats n, stride of the first repeat s)
CIFAR_SETTING = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
DROPOUT = 0.2
RELU6 = 6.0


def relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(max_value=RELU6, name=name)


def depthwise3x3(h, strides: int, name: str):
    if strides == 1:
        padding = "same"
    else:
        # PyTorch pads 1 on every side; Keras 'same' with stride 2 pads only bottom/right for even inputs.
        h = keras.layers.ZeroPadding2D(1, name=f"{name}.pad")(h)
        padding = "valid"
    return keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding, use_bias=False, name=name,
                                        depthwise_initializer=xavier_normal())(h)


def inverted_residual(h, out_channels: int, strides: int, expansion: int, name: str):
    in_channels = h.shape[-1]
    hidden = int(round(in_channels * expansion))
    out = h
    if expansion != 1:
        out = conv_bn_relu(out, hidden, 1, (f"{name}.expand.conv", f"{name}.expand.bn", f"{name}.expand.relu"),
                           padding="valid", relu_max=RELU6)
    out = depthwise3x3(out, strides, f"{name}.dw.conv")
    out = batch_norm(f"{name}.dw.bn")(out)
    out = relu6(f"{name}.dw.relu")(out)
    # Linear bottleneck: no activation after the projection, as in the MobileNetV2 paper.
    out = conv_bn_relu(out, out_channels, 1, (f"{name}.project.conv", f"{name}.project.bn"), padding="valid")
    if strides == 1 and in_channels == out_channels:
        out = keras.layers.Add(name=f"{name}.add")([h, out])
    return out


@register("mobilenet_v2", "CIFAR MobileNetV2 (stride 1 in the stem and the 24-channel stage, inverted residuals "
                          "with ReLU6, conv1x1 1280, GAP, dropout 0.2, FC); intended for 32x32x3, works for any "
                          "image >= 8x8")
def mobilenet_v2(input_shape, num_classes) -> keras.Model:
    check_image_shape(input_shape, "mobilenet_v2")
    inputs = keras.Input(shape=input_shape, name="input")
    h = conv_bn_relu(inputs, STEM_CHANNELS, 3, ("stem.conv", "stem.bn", "stem.relu"), relu_max=RELU6)
    index = 1
    for expansion, channels, repeats, first_stride in CIFAR_SETTING:
        for repeat in range(repeats):
            strides = first_stride if repeat == 0 else 1
            h = inverted_residual(h, channels, strides, expansion, f"block{index}")
            index += 1
    h = conv_bn_relu(h, LAST_CHANNELS, 1, ("last.conv", "last.bn", "last.relu"), padding="valid", relu_max=RELU6)
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    h = keras.layers.Dropout(DROPOUT, name="dropout")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="mobilenet_v2")
