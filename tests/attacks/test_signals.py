"""Signals: one traced shape for every batch (padded last batch), logits kept, sensitivity as
Yuan & Zhang 2022 define it."""
import numpy as np
import pytest

from tfprune_mia.attacks import SignalConfig, Signals, compute_signals
from tfprune_mia.backend import keras, tf


def tiny_net():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])


def test_padding_does_not_change_results_and_logits_are_kept():
    net = tiny_net()
    x = np.random.default_rng(0).normal(size=(23, 5)).astype(np.float32)
    y = np.arange(23) % 3
    config = SignalConfig(num_perturbations=4, batch_size=10)
    signals = compute_signals(net, x, y, config)
    assert signals.posteriors.shape == signals.sensitivity.shape == signals.logits.shape == (23, 3)
    np.testing.assert_allclose(signals.logits, net.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # a linear model's sensitivity is E|grad . u| over Gaussian u: positive and finite
    assert np.all(signals.sensitivity > 0) and np.all(np.isfinite(signals.sensitivity))
    again = compute_signals(net, x, y, config)
    np.testing.assert_array_equal(signals.sensitivity, again.sensitivity)  # seeded noise
    cheap = compute_signals(net, x, y, config, with_sensitivity=False)
    np.testing.assert_array_equal(cheap.posteriors, signals.posteriors)
    assert np.all(np.isnan(cheap.sensitivity))


def test_logit_confidence_is_stable_for_saturated_members(tmp_path):
    logits = np.array([[40.0, 0.0, 0.0], [0.0, 1.0, 2.0]], np.float32)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    signals = Signals(p, np.zeros_like(p), np.array([0, 2]), logits)
    assert signals.logit_confidence[0] == pytest.approx(40.0 - np.log(2.0))
    assert signals.logit_confidence[1] == pytest.approx(2.0 - np.log(np.exp(0.0) + np.exp(1.0)))
    signals.save(tmp_path / "s.npz")
    assert np.array_equal(Signals.load(tmp_path / "s.npz").logits, logits)


class _RecordsPrecision(keras.layers.Layer):
    """Identity that notes, when the signal function traces it, whether TF32 is on and the global policy."""

    seen = []

    def call(self, inputs):
        _RecordsPrecision.seen.append((tf.config.experimental.tensor_float_32_execution_enabled(),
                                       keras.mixed_precision.global_policy().name))
        return inputs


def test_signals_are_computed_in_float32_with_tf32_off_whatever_the_process_set():
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(3, name="out")(keras.layers.Dense(8, activation="tanh", name="fc")(inputs))
    reference = keras.Model(inputs, logits)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="tanh", name="fc")(inputs)
        mixed = keras.Model(inputs, keras.layers.Dense(3, name="out")(_RecordsPrecision()(hidden)))
        mixed.set_weights(reference.get_weights())
        tf.config.experimental.enable_tensor_float_32_execution(True)
        x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
        y = np.arange(20) % 3
        # The mixed net on its own computes in float16: its outputs are visibly off the float32 ones.
        assert np.abs(mixed.predict(x, verbose=0).astype(np.float32) - reference.predict(x, verbose=0)).max() > 1e-5
        _RecordsPrecision.seen.clear()
        signals = compute_signals(mixed, x, y, SignalConfig(num_perturbations=3))
        assert _RecordsPrecision.seen and set(_RecordsPrecision.seen) == {(False, "float32")}
        # The settings of the process come back afterwards.
        assert tf.config.experimental.tensor_float_32_execution_enabled()
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
        tf.config.experimental.enable_tensor_float_32_execution(False)
    expected = compute_signals(reference, x, y, SignalConfig(num_perturbations=3))
    np.testing.assert_allclose(signals.logits, expected.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(signals.sensitivity, expected.sensitivity, rtol=1e-5, atol=1e-5)


def test_sensitivity_copy_by_copy_equals_one_pass_over_all_perturbed_copies():
    """The m noisy copies go through the model one at a time (memory); the noise and every value stay those of
    one forward pass over the whole m * batch tensor, the way the signals were first computed."""
    keras.utils.set_random_seed(1)
    net = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(1).normal(size=(12, 6, 6, 1)).astype(np.float32)
    y = np.arange(12) % 3
    config = SignalConfig(num_perturbations=3, epsilon=1e-2, noise_seed=5, batch_size=5)
    signals = compute_signals(net, x, y, config)
    expected = []
    for index, start in enumerate(range(0, len(x), config.batch_size)):
        batch = x[start:start + config.batch_size]
        padded = np.concatenate([batch, np.zeros((config.batch_size - len(batch),) + x.shape[1:], np.float32)])
        tiled = tf.tile(padded, [config.num_perturbations, 1, 1, 1])
        noise = tf.random.stateless_normal(tf.shape(tiled), seed=tf.constant([5, index], tf.int64))
        probs = tf.nn.softmax(net(padded, training=False))
        perturbed = tf.reshape(tf.nn.softmax(net(tiled + config.epsilon * noise, training=False)),
                               [config.num_perturbations, config.batch_size, -1])
        sensitivity = tf.reduce_mean(tf.abs(perturbed - probs[None]), axis=0) / config.epsilon
        expected.append(sensitivity.numpy()[:len(batch)])
    np.testing.assert_allclose(signals.sensitivity, np.concatenate(expected), rtol=1e-5, atol=1e-6)
