"""Each stacked layer computes, for every model k, what the Keras layer with model k's weights computes:
outputs, gradients (inputs and weights) and batch-norm moving statistics, to 1e-5."""
import numpy as np
import pytest

from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.models import build_model
from tfprune_mia.models.layers import batch_norm, conv2d, dense
from tfprune_mia.models.stacked import (StackedBatchNorm, StackedConv2D, StackedDense, StackedModels,
                                        build_stacked)
from tfprune_mia.errors import ConfigError

K = 3
TOL = dict(rtol=1e-5, atol=1e-5)


def _randomised(layer, rng, shape):
    """Build `layer` for `shape` and give every weight random values (BN statistics off their defaults)."""
    layer(tf.zeros(shape))  # builds it
    layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "variance" in w.name
                       else rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights])
    return layer


def _compare(singles, stacked, xs, listed, training=False):
    """Forward and gradients of stacked (on the K inputs) against the K single layers."""
    rng = np.random.default_rng(1)
    stacked([tf.zeros(x.shape) for x in xs] if listed else tf.zeros((K, *xs[0].shape)))  # builds it
    stacked.set_weights([np.stack(parts) for parts in zip(*[layer.get_weights() for layer in singles])])
    xs = [tf.constant(x) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xs)
        outs = stacked(xs if listed else tf.stack(xs), training=training)
        outs = outs if listed else tf.unstack(outs)
        weights = [tf.constant(rng.normal(size=o.shape).astype(np.float32)) for o in outs]
        stacked_loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outs, weights)])
        single_outs = [layer(x, training=training) for layer, x in zip(singles, xs)]
        single_losses = [tf.reduce_sum(o * w) for o, w in zip(single_outs, weights)]
    for out, single in zip(outs, single_outs):
        np.testing.assert_allclose(out.numpy(), single.numpy(), **TOL)
    stacked_grads = tape.gradient(stacked_loss, [*xs, *stacked.trainable_weights])
    for k, (layer, loss) in enumerate(zip(singles, single_losses)):
        grads = tape.gradient(loss, [xs[k], *layer.trainable_weights])
        np.testing.assert_allclose(stacked_grads[k].numpy(), grads[0].numpy(), **TOL)
        for stacked_grad, grad in zip(stacked_grads[K:], grads[1:]):
            np.testing.assert_allclose(stacked_grad.numpy()[k], grad.numpy(), **TOL)
    for k, layer in enumerate(singles):  # moving statistics, if any
        for stacked_weight, weight in zip(stacked.get_weights(), layer.get_weights()):
            np.testing.assert_allclose(stacked_weight[k], weight, **TOL)


@pytest.mark.parametrize("kernel,strides,padding,bias", [(3, 1, "same", False), (5, 2, "valid", True)])
def test_stacked_conv2d_equals_k_keras_conv2d(kernel, strides, padding, bias):
    rng = np.random.default_rng(0)
    shape = (8, 9, 9, 4)
    singles = [_randomised(conv2d(6, kernel, f"c{k}", strides=strides, padding=padding, use_bias=bias), rng, shape)
               for k in range(K)]
    stacked = StackedConv2D(K, 6, (kernel, kernel), (strides, strides), padding, bias)
    _compare(singles, stacked, [rng.normal(size=shape).astype(np.float32) for _ in range(K)], listed=True)


@pytest.mark.parametrize("shape", [(16, 5, 5, 6), (16, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_stacked_batch_norm_equals_k_keras_batch_norms(shape, training):
    rng = np.random.default_rng(0)
    singles = [_randomised(batch_norm(f"bn{k}"), rng, shape) for k in range(K)]
    stacked = StackedBatchNorm(K, singles[0].momentum, singles[0].epsilon)
    # after a training call the moving statistics of both have moved by one update
    _compare(singles, stacked, [rng.normal(1.0, 2.0, size=shape).astype(np.float32) for _ in range(K)],
             listed=True, training=training)


def test_stacked_dense_equals_k_keras_dense():
    rng = np.random.default_rng(0)
    singles = [_randomised(dense(7, f"d{k}", activation="relu"), rng, (10, 12)) for k in range(K)]
    stacked = StackedDense(K, 7, "relu")
    _compare(singles, stacked, [rng.normal(size=(10, 12)).astype(np.float32) for _ in range(K)], listed=False)


def test_a_stacked_training_step_gives_each_model_its_own_gradient_and_statistics():
    # small_cnn end to end (conv, BN, ReLU, pooling, flatten, dense), training mode
    stacked = StackedModels("small_cnn", (8, 8, 1), 10, seeds=[1, 2, 3])
    rng = np.random.default_rng(0)
    xs = rng.random((K, 16, 8, 8, 1)).astype(np.float32)
    ys = rng.integers(0, 10, (K, 16))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = stacked.model(np.transpose(xs, (1, 0, 2, 3, 4)), training=True)
        total = tf.add_n([loss(ys[k], logits[:, k]) for k in range(K)])
    variables = {(name, i): v for name in stacked.weighted
                 for i, v in enumerate(stacked.model.get_layer(name).trainable_weights)}
    grads = dict(zip(variables, tape.gradient(total, list(variables.values()))))
    for k, seed in enumerate([1, 2, 3]):
        set_seed(seed)
        alone = build_model("small_cnn", (8, 8, 1), 10)
        with tf.GradientTape(persistent=True) as tape:
            alone_loss = loss(ys[k], alone(xs[k], training=True))
        for (name, i), variable in variables.items():
            grad = tape.gradient(alone_loss, alone.get_layer(name).trainable_weights[i])
            np.testing.assert_allclose(grads[name, i].numpy()[k], grad.numpy(), **TOL)
        for name, weights in stacked.member_weights(k).items():
            for stacked_weight, weight in zip(weights, alone.get_layer(name).get_weights()):
                np.testing.assert_allclose(stacked_weight, weight, **TOL)  # BN moving statistics too


def test_layers_the_stacker_cannot_reproduce_are_refused():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, dilation_rate=2, name="dilated")(inputs)
    h = keras.layers.Flatten()(h)
    with pytest.raises(ConfigError, match="dilated"):
        build_stacked(keras.Model(inputs, keras.layers.Dense(2)(h)), 2)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(4, kernel_regularizer="l2", name="decayed")(h)
    with pytest.raises(ConfigError, match="regularisers"):
        build_stacked(keras.Model(inputs, h), 2)
