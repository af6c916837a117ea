"""Signals of the deployed artefact: a float TFLite export gives the Keras model's signals (same batches, padding
and perturbation noise); dynamic-range int8 and float16 exports give their own, smaller files."""
import numpy as np
import pytest

from tfprune_mia.artifacts import ARTIFACTS, artifact_facts, artifact_signals, convert
from tfprune_mia.attacks import SignalConfig, compute_signals
from tfprune_mia.backend import keras, set_seed
from tfprune_mia.errors import ConfigError


def small_net(softmax: bool):
    set_seed(0)
    layers = [keras.layers.Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1)), keras.layers.Flatten(),
              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    return keras.Sequential(layers + ([keras.layers.Softmax()] if softmax else []))


X = np.random.default_rng(0).random((70, 8, 8, 1)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 10, 70)
CONFIG = SignalConfig(num_perturbations=3, epsilon=1e-2, batch_size=32)  # 70 = 2 full batches + a padded one


@pytest.mark.parametrize("softmax", [False, True])
def test_float_tflite_signals_match_the_keras_models(softmax):
    net = small_net(softmax)
    keras_signals = compute_signals(net, X, Y, CONFIG)
    flat = artifact_signals(convert(net, "tflite"), softmax, X, Y, CONFIG)
    np.testing.assert_allclose(flat.posteriors, keras_signals.posteriors, atol=1e-5)
    np.testing.assert_allclose(flat.logit_confidence, keras_signals.logit_confidence, atol=1e-3)
    np.testing.assert_allclose(flat.sensitivity, keras_signals.sensitivity, rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(flat.labels, keras_signals.labels)
    cheap = artifact_signals(convert(net, "tflite"), softmax, X, Y, CONFIG, with_sensitivity=False)
    assert np.isnan(cheap.sensitivity).all()
    np.testing.assert_allclose(cheap.posteriors, flat.posteriors)


def test_quantised_artefacts_are_smaller_and_close():
    net = small_net(False)
    keras_signals = compute_signals(net, X, Y, CONFIG)
    sizes = {kind: artifact_facts(convert(net, kind), kind)["artifact_bytes"] for kind in ARTIFACTS.names()}
    assert sizes["tflite_int8"] < 0.5 * sizes["tflite"] and sizes["tflite_fp16"] < 0.7 * sizes["tflite"]
    for kind in ("tflite_int8", "tflite_fp16"):
        quantised = artifact_signals(convert(net, kind), False, X, Y, CONFIG)
        assert np.all(np.isfinite(quantised.posteriors)) and np.all(np.isfinite(quantised.sensitivity))
        np.testing.assert_allclose(quantised.posteriors, keras_signals.posteriors, atol=0.05)


def test_unknown_artefacts_are_refused():
    with pytest.raises(ConfigError, match="unknown artifact 'onnx'"):
        convert(small_net(False), "onnx")
