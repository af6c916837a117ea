"""SAMIA as Yuan & Zhang 2022 build it, its h5 round-trip, the ablations' inputs and PyTorch-form SGD momentum."""
import numpy as np
import pytest

from tfprune_mia.attacks import AttackContext, MembershipSet, Signals, make_attack
from tfprune_mia.attacks.neural import TorchSGD, build_miafc
from tfprune_mia.attacks.samia import PostNormEncoderLayer, build_samia, samia_features
from tfprune_mia.backend import keras, tf
from tests.leaks import live_graphs


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


class KerasBuiltEncoder(PostNormEncoderLayer):
    """The encoder layer as it was before its fused call(): Keras' own sublayers called in turn, built lazily."""

    def build(self, input_shape):
        keras.layers.Layer.build(self, input_shape)

    def call(self, tokens, training=None):
        return self.keras_call(tokens, training=training)


def values_and_gradients(layer, tokens, training):
    with tf.GradientTape() as tape:
        tape.watch(tokens)
        out = layer(tokens, training=training)
        loss = tf.reduce_sum(out * tf.sin(out))
    return [out, *tape.gradient(loss, [tokens, *layer.trainable_variables])]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "dropout"])
def test_encoder_layer_is_the_keras_composite_in_values_and_gradients(training):
    from tfprune_mia.attacks.neural import step_dropout
    from tfprune_mia.backend import set_seed

    tokens = tf.constant(np.random.default_rng(2).normal(size=(24, 10, 64)).astype(np.float32))
    layers = []
    for kind in (PostNormEncoderLayer, KerasBuiltEncoder):
        set_seed(0)
        layer = kind(name="encoder0")
        model = keras.Sequential([keras.Input((10, 64)), layer])
        layers.append((layer, model))
    (ours, our_model), (theirs, their_model) = layers
    # Same variables in the same order under the same names, initialised alike: saved models are interchangeable.
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(got, want)
    results = []
    for layer, model in layers:
        # The masks are a function of (seed, step, layer), so both layers drop the same elements.
        with step_dropout(model, seed=4, step=tf.Variable(3, dtype=tf.int64)):
            results.append(values_and_gradients(layer, tokens, training))
    scale = max(float(np.max(np.abs(want))) for want in results[1][2:])
    for got, want in zip(*results):
        # float32 rounding of differently ordered sums; the key bias's gradient is 0 up to that rounding
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6 * scale)
    if training:  # dropout acted (else the comparison would not cover the masks)
        plain = values_and_gradients(ours, tokens, training=False)[0]
        assert not np.allclose(plain.numpy(), results[0][0].numpy(), atol=1e-3)


def test_layer_norm_and_gelu_are_keras_in_values_and_gradients():
    from tfprune_mia.attacks.samia import LAYER_NORM_EPSILON, gelu, layer_norm

    rng = np.random.default_rng(3)
    # rows of very different scales, one nearly constant (where epsilon matters)
    rows = rng.normal(size=(40, 64)) * rng.choice([1e-3, 1.0, 30.0], size=(40, 1))
    rows[0] = 0.5 + 1e-4 * rng.normal(size=64)
    rows = tf.constant(rows.astype(np.float32))
    norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
    norm.build(rows.shape)
    norm.set_weights([rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)])
    weights = rng.normal(size=(40, 64)).astype(np.float32)
    results = []
    for apply in (lambda x: layer_norm(x, norm.gamma, norm.beta, LAYER_NORM_EPSILON), norm):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            out = apply(rows)
            loss = tf.reduce_sum(out * weights)
        results.append([out, *tape.gradient(loss, [rows, norm.gamma, norm.beta])])
    for got, want in zip(*results):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5 * float(np.max(np.abs(want))))
    inputs = tf.constant(np.linspace(-8, 8, 401, dtype=np.float32))
    results = []
    for apply in (gelu, keras.activations.gelu):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = apply(inputs)
        results.append([out, tape.gradient(out, inputs)])
    for got, want in zip(*results):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_a_trained_samia_leaves_no_graph_behind():
    # Its layer norms and GELUs are tf.custom_gradient functions, which TF registers process-wide for good on
    # every trace: each SAMIA model kept its graphs and training features alive.
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 64).astype(np.float32)
    shadow = MembershipSet(Signals(p, rng.random((64, 3)).astype(np.float32), rng.integers(0, 3, 64)),
                           rng.integers(0, 2, 64))

    def attack():
        samia = make_attack("samia", AttackContext(seed=0, epochs=1, batch_size=32)).fit(shadow)
        samia.score(shadow.signals)

    attack()
    graphs = live_graphs()
    attack()
    attack()
    assert live_graphs() <= graphs
