"""SAMIA as Yuan & Zhang 2022 build it, its h5 round-trip, the ablations' inputs and PyTorch-form SGD momentum."""
import numpy as np
import pytest

from tfprune_mia.attacks import Signals, make_attack
from tfprune_mia.attacks.neural import TorchSGD, build_miafc
from tfprune_mia.attacks.samia import PostNormEncoderLayer, build_samia, samia_features
from tfprune_mia.backend import keras, tf


def test_architecture_matches_the_paper():
    model = build_samia(num_classes=10)
    encoders = [layer for layer in model.layers if isinstance(layer, PostNormEncoderLayer)]
    assert len(encoders) == 3
    assert all(e.d_model == 64 and e.num_heads == 4 and e.ffn_dim == 128 and e.dropout == 0.2 for e in encoders)
    assert model.get_layer("class_tokens").output_shape == (None, 10, 3)
    assert model.get_layer("flatten").output_shape == (None, 640)
    assert model.get_layer("fc").units == 64 and model.output_shape == (None, 2)
    assert model.get_layer("input_norm").epsilon == 1e-5
    assert build_samia(10, num_chunks=2).get_layer("class_tokens").output_shape == (None, 10, 2)
    # exact (erf) GELU, not the tanh approximation
    x = tf.constant([1.0])
    assert model.get_layer("embed").activation(x).numpy()[0] == pytest.approx(0.8413447, abs=1e-6)


def test_class_tokens_stack_the_chunks_per_class():
    signals = Signals(np.array([[0.7, 0.3]], np.float32), np.array([[5.0, 6.0]], np.float32), np.array([1]))
    features = samia_features(signals)
    assert features.tolist() == [[0.7 * 1, 0.3, 5.0, 6.0, 0.0, 1.0]] or np.allclose(features, [[0.7, 0.3, 5, 6, 0, 1]])
    tokens = build_samia(2).get_layer("class_tokens")(tf.constant(features)).numpy()
    assert np.allclose(tokens[0], [[0.7, 5.0, 0.0], [0.3, 6.0, 1.0]])
    assert samia_features(signals, with_sensitivity=False).shape == (1, 4)


def test_h5_round_trip_gives_identical_outputs(tmp_path):
    model = build_samia(num_classes=5)
    features = np.random.default_rng(0).random((16, 15)).astype(np.float32)
    model(features, training=True)  # move BN statistics away from the initial ones
    path = str(tmp_path / "samia.h5")
    model.save(path, save_format="h5")
    restored = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(model.predict(features, verbose=0), restored.predict(features, verbose=0))
    miafc = build_miafc(7)
    miafc.save(str(tmp_path / "miafc.h5"), save_format="h5")
    x = features[:, :7]
    np.testing.assert_array_equal(miafc.predict(x, verbose=0),
                                  keras.models.load_model(str(tmp_path / "miafc.h5")).predict(x, verbose=0))


def test_sgd_momentum_has_the_pytorch_form():
    # lr drops from 1 to 0.1 after 2 steps (the schedule's boundary 1: steps 0, 1 at lr 1); PyTorch: v = 0.9 v + g; w -= lr * v, with g = 1 every step
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [1.0, 0.1])
    w = tf.Variable([0.0])
    optimizer = TorchSGD(schedule, momentum=0.9)
    expected, v = 0.0, 0.0
    for step in range(4):
        optimizer.apply_gradients([(tf.constant([1.0]), w)])
        v = 0.9 * v + 1.0
        expected -= (1.0 if step < 2 else 0.1) * v
    assert w.numpy()[0] == pytest.approx(expected, rel=1e-6)


def test_feature_widths_of_the_mlp_baselines():
    p = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], np.float32)
    signals = Signals(p, np.ones_like(p), np.array([0, 2]))
    assert np.allclose(make_attack("nn_top3").features(signals), [[0.6, 0.3, 0.1], [0.6, 0.2, 0.2]])
    assert make_attack("nn").features(signals).shape == (2, 3)
    assert make_attack("nn_cls").features(signals).shape == (2, 6)
    assert make_attack("samia_mlp").features(signals).shape == (2, 9)


def test_learning_rate_drops_at_the_milestone_epochs():
    from tfprune_mia.attacks.neural import step_schedule

    schedule = step_schedule(epochs=4, steps_per_epoch=3)  # milestones: epochs 2 and 3 -> steps 6 and 9
    rates = [float(schedule(step)) for step in range(12)]
    assert rates == pytest.approx([1e-3] * 6 + [1e-4] * 3 + [1e-5] * 3)
    assert float(step_schedule(epochs=1, steps_per_epoch=3)(100)) == pytest.approx(1e-3)
