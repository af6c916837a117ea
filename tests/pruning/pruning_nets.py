"""Tiny networks with the structures the channel pruners must handle: plain chains, residual adds, concats."""
import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.models.densenet import dense_layer, transition
from tfprune_mia.models.layers import batch_norm, conv2d, dense
from tfprune_mia.models.resnet import basic_block


def randomise_batch_norms(net, seed=0):
    """Non-trivial BN statistics, so that a channel that is not exactly zeroed would show in the outputs."""
    rng = np.random.RandomState(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.1, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return net


def tiny_cnn(input_shape=(8, 8, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    for block, filters in enumerate((8, 16), start=1):
        h = conv2d(filters, 3, f"conv{block}", use_bias=block == 2)(h)
        h = batch_norm(f"bn{block}")(h)
        h = keras.layers.ReLU(name=f"relu{block}")(h)
        h = keras.layers.MaxPooling2D(2, name=f"pool{block}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense(16, "fc1", activation="relu")(h)
    return keras.Model(inputs, dense(num_classes, "classifier")(h), name="tiny_cnn")


def tiny_resnet(input_shape=(8, 8, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape, name="input")
    h = conv2d(8, 3, "conv1", use_bias=False)(inputs)
    h = batch_norm("bn1")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = basic_block(h, 8, 1, "layer1.0")    # identity shortcut: conv1 and layer1.0.conv2 share channels
    h = basic_block(h, 8, 1, "layer1.1")
    h = basic_block(h, 16, 2, "layer2.0")   # 1x1 shortcut conv
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    return keras.Model(inputs, dense(num_classes, "classifier")(h), name="tiny_resnet")


def tiny_densenet(input_shape=(8, 8, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape, name="input")
    h = conv2d(16, 3, "conv0", use_bias=False)(inputs)
    for layer in (1, 2):
        h = dense_layer(h, f"denseblock1.denselayer{layer}")
    h = transition(h, "transition1")
    h = dense_layer(h, "denseblock2.denselayer1")
    h = batch_norm("norm5")(h)
    h = keras.layers.ReLU(name="relu5")(h)
    h = keras.layers.GlobalAveragePooling2D(name="avgpool")(h)
    return keras.Model(inputs, dense(num_classes, "classifier")(h), name="tiny_densenet")


def tiny_fc(input_shape=(8, 8, 1), num_classes=10):
    inputs = keras.Input(shape=input_shape, name="input")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = dense(32, "fc1", activation="relu")(h)
    return keras.Model(inputs, dense(num_classes, "classifier")(h), name="tiny_fc")
