"""One Keras in the process: tfmot, keras-tuner and TF Privacy all accept models built by our code."""
import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.models import build_model


def test_tf_keras_is_the_only_keras():
    import keras_tuner  # noqa: F401  (importing it used to flip tf.keras back to Keras 2.15's own package)
    import tensorflow_model_optimization  # noqa: F401

    import tf_keras

    assert keras is tf_keras
    assert isinstance(build_model("small_cnn", (8, 8, 1), 10), tf.keras.Model)


def test_tfmot_wraps_our_model():
    import tensorflow_model_optimization as tfmot

    net = build_model("small_cnn", (8, 8, 1), 10)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(net)
    assert sum("prune_low_magnitude" in layer.name for layer in wrapped.layers) >= 3
    assert wrapped(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)


def test_keras_tuner_searches_our_model(tmp_path):
    import keras_tuner

    x = np.random.default_rng(0).normal(size=(32, 8, 8, 1)).astype(np.float32)
    y = np.arange(32) % 10

    def build(hp):
        net = build_model("small_cnn", (8, 8, 1), 10)
        net.compile(keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 1e-2])),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return net

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=1, directory=str(tmp_path),
                                     project_name="smoke", seed=0)
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert len(tuner.oracle.trials) == 1


def test_tf_privacy_optimizer_compiles_our_model():
    from tensorflow_privacy import DPKerasAdamOptimizer

    net = build_model("small_cnn", (8, 8, 1), 10)
    optimizer = DPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=4)
    net.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=keras.losses.Reduction.NONE))
    net.fit(np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int64), batch_size=4, verbose=0)


def test_tf32_is_off():
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
