"""Registered architectures: sizes against the published numbers, the authors' initialisation, graph shape for pruners.

Parameter counts compare Keras' TRAINABLE weights with PyTorch's `numel` sum: PyTorch does not count BN running
statistics, Keras lists them as non-trainable weights.
"""
import functools

import numpy as np
import pytest

from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.models import MODELS, build_model


# --- parameter-count formulas (PyTorch conventions: BN has gamma and beta only) -----------------------------

def conv(k, c_in, c_out, bias=False):
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c):
    return 2 * c


def fc(d_in, d_out):
    return d_in * d_out + d_out


def resnet18_count(in_channels, num_classes):
    total = conv(3, in_channels, 64) + bn(64)
    c_in = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            total += conv(3, c_in, width) + bn(width) + conv(3, width, width) + bn(width)
            if c_in != width:
                total += conv(1, c_in, width) + bn(width)
            c_in = width
    return total + fc(512, num_classes)


def vgg16_bn_count(in_channels, num_classes):
    total, c_in = 0, in_channels
    for width in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512):
        total += conv(3, c_in, width, bias=True) + bn(width)
        c_in = width
    return total + fc(512, 4096) + fc(4096, 4096) + fc(4096, num_classes)


def densenet121_count(in_channels, num_classes, growth=32, blocks=(6, 12, 24, 16), bn_size=4):
    c = 2 * growth
    total = conv(3, in_channels, c) + bn(c)
    for index, layers in enumerate(blocks):
        for _ in range(layers):
            total += bn(c) + conv(1, c, bn_size * growth) + bn(bn_size * growth) + conv(3, bn_size * growth, growth)
            c += growth
        if index != len(blocks) - 1:
            total += bn(c) + conv(1, c, c // 2)
            c //= 2
    return total + bn(c) + fc(c, num_classes)


def lenet5_count(height, width, in_channels, num_classes):
    # 'valid' 5x5 convs, 'same' 2x2 pools (ceil).
    h, w = -(-(height - 4) // 2), -(-(width - 4) // 2)
    h, w = -(-(h - 4) // 2), -(-(w - 4) // 2)
    return conv(5, in_channels, 20, bias=True) + conv(5, 20, 50, bias=True) + fc(h * w * 50, 500) + fc(500, num_classes)


MOBILENET_CIFAR = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1))


def mobilenet_v2_count(in_channels, num_classes):
    total = conv(3, in_channels, 32) + bn(32)
    c_in = 32
    for t, c, n, _ in MOBILENET_CIFAR:
        for _ in range(n):
            hidden = c_in * t
            if t != 1:
                total += conv(1, c_in, hidden) + bn(hidden)
            total += 9 * hidden + bn(hidden)  # depthwise 3x3, no bias
            total += conv(1, hidden, c) + bn(c)
            c_in = c
    return total + conv(1, c_in, 1280) + bn(1280) + fc(1280, num_classes)


def columnfc_count(d, num_classes):
    return fc(d, 256) + fc(256, 128) + fc(128, num_classes)


def small_cnn_count(height, width, in_channels, num_classes):
    flat = (height // 4) * (width // 4) * 64
    return (conv(3, in_channels, 32) + bn(32) + conv(3, 32, 64) + bn(64) + fc(flat, 128)
            + fc(128, num_classes))


# (input_shape, num_classes, expected trainable count); the first case of each model is its intended use.
CASES = {
    "resnet18": [((32, 32, 3), 10, 11_173_962), ((28, 28, 1), 10, resnet18_count(1, 10))],
    "vgg16_bn": [((32, 32, 3), 10, vgg16_bn_count(3, 10))],
    "densenet121": [((32, 32, 3), 10, densenet121_count(3, 10))],
    "lenet5": [((28, 28, 1), 10, 431_080), ((32, 32, 3), 10, lenet5_count(32, 32, 3, 10))],
    "mobilenet_v2": [((32, 32, 3), 10, mobilenet_v2_count(3, 10))],
    "columnfc": [((600,), 100, 199_652), ((6169,), 100, 1_625_316), ((446,), 30, 151_198)],
    "small_cnn": [((8, 8, 1), 10, small_cnn_count(8, 8, 1, 10))],
}
ALL_CASES = [pytest.param(name, shape, classes, expected, id=f"{name}-{'x'.join(map(str, shape))}-C{classes}")
             for name, cases in CASES.items() for shape, classes, expected in cases]
INTENDED = [pytest.param(name, *CASES[name][0][:2], id=name) for name in CASES]

# Published sizes in thousands (huyvnphan/PyTorch_CIFAR10 README, rounded there to 1 K), for C=10.
PUBLISHED_K = {"resnet18": 11_174, "vgg16_bn": 33_647, "densenet121": 6_956, "mobilenet_v2": 2_237}


@functools.lru_cache(maxsize=None)
def built(name, input_shape, num_classes):
    return build_model(name, input_shape, num_classes)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_every_registered_model_is_covered():
    assert set(MODELS.names()) == set(CASES)


@pytest.mark.parametrize("name,shape,classes,expected", ALL_CASES)
def test_trainable_parameter_count(name, shape, classes, expected):
    assert trainable_count(built(name, shape, classes)) == expected


def test_formulas_agree_with_published_sizes():
    assert resnet18_count(3, 10) == 11_173_962
    assert lenet5_count(28, 28, 1, 10) == 431_080
    formulas = {"resnet18": resnet18_count, "vgg16_bn": vgg16_bn_count, "densenet121": densenet121_count,
                "mobilenet_v2": mobilenet_v2_count}
    for name, published in PUBLISHED_K.items():
        assert round(formulas[name](3, 10) / 1000) == published, name


@pytest.mark.parametrize("name,shape,classes", INTENDED)
def test_functional_with_unique_names(name, shape, classes):
    model = built(name, shape, classes)
    assert type(model).__name__ == "Functional"
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name,shape,classes", INTENDED)
def test_forward_pass_gives_logits(name, shape, classes):
    model = built(name, shape, classes)
    x = np.random.default_rng(0).random((2,) + shape, dtype=np.float32)
    for training in (False, True):
        out = model(x, training=training).numpy()
        assert out.shape == (2, classes)
        assert np.all(np.isfinite(out))
    # Attacks and losses expect logits: no softmax anywhere, so rows need not be probability vectors.
    assert not np.allclose(out.sum(axis=1), 1.0)
    assert model.layers[-1].activation is keras.activations.linear
    for layer in model.layers:
        assert not isinstance(layer, keras.layers.Softmax)
        assert getattr(layer, "activation", None) is not keras.activations.softmax


@pytest.mark.parametrize("name,shape,classes", INTENDED)
def test_spec_initialisation_and_batchnorm(name, shape, classes):
    for layer in built(name, shape, classes).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.momentum == pytest.approx(0.9) and layer.epsilon == pytest.approx(1e-5), layer.name
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            init = layer.depthwise_initializer
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            init = layer.kernel_initializer
        else:
            continue
        assert isinstance(init, keras.initializers.VarianceScaling), layer.name
        assert (init.scale, init.mode, init.distribution) == (1.0, "fan_avg", "untruncated_normal"), layer.name
        if layer.use_bias:
            assert isinstance(layer.bias_initializer, keras.initializers.Zeros), layer.name


CONV_MODELS = [p for p in INTENDED if p.values[0] != "columnfc"]


@pytest.mark.parametrize("name,shape,classes", CONV_MODELS)
def test_convs_are_linear_so_bn_and_activation_are_separate_layers(name, shape, classes):
    convs = [layer for layer in built(name, shape, classes).layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs
    assert all(layer.activation is keras.activations.linear for layer in convs)


def count_layers(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


def test_merge_layers_expose_channel_dependencies():
    assert count_layers(built("resnet18", (32, 32, 3), 10), keras.layers.Add) == 8
    assert count_layers(built("densenet121", (32, 32, 3), 10), keras.layers.Concatenate) == sum((6, 12, 24, 16))
    # Residuals only where stride 1 and in == out: 1 + 2 + 3 + 2 + 2 of the 17 blocks.
    assert count_layers(built("mobilenet_v2", (32, 32, 3), 10), keras.layers.Add) == 10


def test_resnet18_layer_names_follow_pytorch_paths():
    model = built("resnet18", (32, 32, 3), 10)
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer2.0.bn2", "layer2.0.shortcut.conv",
                 "layer4.1.conv2", "classifier"):
        model.get_layer(name)
    with pytest.raises(ValueError):
        model.get_layer("layer1.0.shortcut.conv")


def test_resnet18_stem_pool_gives_16x16_for_32x32():
    model = built("resnet18", (32, 32, 3), 10)
    assert tuple(model.get_layer("maxpool").output.shape) == (None, 16, 16, 64)
    stage_sides = [model.get_layer(f"layer{stage}.1.relu2").output.shape[1] for stage in (1, 2, 3, 4)]
    assert stage_sides == [16, 8, 4, 2]


def torch_padded(x, pad=1, value=0.0):
    return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=value)


def test_resnet18_strided_conv_and_pool_match_pytorch_padding():
    model = built("resnet18", (32, 32, 3), 10)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((1, 16, 16, 64)), tf.float32)
    conv_layer = model.get_layer("layer2.0.conv1")
    got = conv_layer(model.get_layer("layer2.0.conv1.pad")(x))
    want = tf.nn.conv2d(x, conv_layer.kernel, strides=2, padding=[[0, 0], [1, 1], [1, 1], [0, 0]])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)

    # MaxPool2d(3, 2, padding=1) pads with -inf; the stem pool only sees post-ReLU (non-negative) input.
    x = tf.nn.relu(tf.constant(rng.standard_normal((1, 32, 32, 64)), tf.float32))
    got = model.get_layer("maxpool")(model.get_layer("maxpool.pad")(x))
    want = tf.nn.max_pool2d(torch_padded(x, value=-np.inf), 3, 2, "VALID")
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_mobilenet_strided_depthwise_matches_pytorch_padding():
    model = built("mobilenet_v2", (32, 32, 3), 10)
    layer = model.get_layer("block4.dw.conv")  # first block of the (6, 32, 3, 2) stage
    assert layer.strides == (2, 2)
    x = tf.constant(np.random.default_rng(2).standard_normal((1, 32, 32, layer.input_shape[-1])), tf.float32)
    got = layer(model.get_layer("block4.dw.conv.pad")(x))
    want = tf.nn.depthwise_conv2d(torch_padded(x), layer.depthwise_kernel, [1, 2, 2, 1], "VALID")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as excinfo:
        build_model("nope", (32, 32, 3), 10)
    for name in MODELS.names():
        assert name in str(excinfo.value)


@pytest.mark.parametrize("name,shape", [("vgg16_bn", (28, 28, 1)), ("resnet18", (784,)), ("lenet5", (28, 28))])
def test_unusable_input_shapes_are_config_errors(name, shape):
    with pytest.raises(ConfigError):
        build_model(name, shape, 10)
