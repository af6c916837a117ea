"""The shared conv-BN-ReLU block: layer names, order and settings are what pruners and checkpoints rely on."""
from tfprune_mia.backend import keras
from tfprune_mia.models.layers import BN_EPSILON, BN_MOMENTUM, conv_bn_relu


def block_model(names, **options):
    inputs = keras.Input(shape=(8, 8, 3))
    return keras.Model(inputs, conv_bn_relu(inputs, 4, 3, names, **options))


def test_conv_bn_relu_names_orders_and_configures_its_layers():
    model = block_model(("c", "b", "r"), strides=2, padding="valid")
    conv, bn, relu = model.layers[1:]
    assert [layer.name for layer in (conv, bn, relu)] == ["c", "b", "r"]
    assert isinstance(conv, keras.layers.Conv2D) and not conv.use_bias and conv.strides == (2, 2)
    assert conv.padding == "valid" and model.output_shape == (None, 3, 3, 4)
    assert (bn.momentum, bn.epsilon) == (BN_MOMENTUM, BN_EPSILON)
    assert isinstance(relu, keras.layers.ReLU) and relu.max_value is None


def test_relu6_and_linear_variants():
    relu6 = block_model(("c", "b", "r"), relu_max=6.0, use_bias=True)
    assert float(relu6.layers[-1].max_value) == 6.0 and relu6.layers[1].use_bias
    linear = block_model(("c", "b"))
    assert [type(layer) for layer in linear.layers[1:]] == [keras.layers.Conv2D, keras.layers.BatchNormalization]
