import numpy as np
import pytest

from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.data import load_dataset
from tfprune_mia.defenses import AdvOptions, DefenseConfig, DefenseContext, MCMIAOptions, make_defense
from tfprune_mia.defenses.advreg import AdversarialRegularisation, build_inference_model, check_reference_set
from tfprune_mia.errors import ConfigError
from tfprune_mia.models import build_model
from tfprune_mia.training import TrainConfig, TrainingModel, fit_classifier


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(data))
    index = {"train": order[:256], "dev": order[256:384], "test": order[384:512]}
    return {name: (data.x[i], data.y[i]) for name, i in index.items()}, index


def context(digits, epochs=1, **index_overrides):
    arrays, index = digits
    index = {**index, **index_overrides}
    return DefenseContext(arrays["train"], arrays["dev"], 10, TrainConfig(epochs=epochs, batch_size=32), seed=0,
                          member_index=index["train"], reference_index=index["dev"], evaluation_index=index["test"])


def test_inference_model_architecture():
    model = build_inference_model(10)
    units = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert sorted(units) == sorted([1024, 512, 64, 128, 64, 512, 256, 128, 64, 1])
    assert model.output_shape == (None, 1)


def test_reference_set_must_be_disjoint_from_members_and_evaluation(digits):
    _, index = digits
    check_reference_set(context(digits))
    with pytest.raises(ConfigError, match="overlaps the members"):
        check_reference_set(context(digits, dev=np.concatenate([index["dev"], index["train"][:1]])))
    with pytest.raises(ConfigError, match="overlaps the attack-evaluation non-members"):
        make_defense(DefenseConfig("adv")).hooks(context(digits, dev=index["test"][:5]))


def test_inference_steps_learn_to_separate_members_from_references():
    """Members get confident posteriors, references flat ones: h's steps alone must learn the difference."""
    set_seed(0)
    rng = np.random.default_rng(0)
    y_members, y_reference = rng.integers(0, 10, 256), rng.integers(0, 10, 128)
    members = (6.0 * np.eye(10, dtype=np.float32)[y_members], y_members)
    reference = (rng.normal(0, 0.1, (128, 10)).astype(np.float32), y_reference)
    net = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10, kernel_initializer="identity")])
    hook = AdversarialRegularisation(1.0, 1, "proper", members, reference, 10, 64, seed=0)
    TrainingModel(net, loss_terms=[hook])  # attaches

    def loss():
        return float(hook.inference_loss(net(members[0]), members[1], net(reference[0]), reference[1]))

    before = loss()
    step = tf.function(hook.inference_step)
    for _ in range(40):
        step()
    assert before > 0.6 and loss() < 0.3
    assert int(hook.h_optimizer.iterations.numpy()) == 40


def test_proper_mode_trains_every_batch_and_as_coded_one_batch_per_epoch(digits, tmp_path):
    arrays, _ = digits
    for mode, expected in (("proper", 2 * 8), ("as_coded", 2)):
        set_seed(1)
        net = build_model("small_cnn", (8, 8, 1), 10)
        [hook] = make_defense(DefenseConfig("adv", 1.0, AdvOptions(mode=mode, steps=2))).hooks(context(digits))
        h_before = [w.numpy().copy() for w in hook.inference_model.trainable_weights]
        fit_classifier(net, arrays["train"], arrays["dev"], TrainConfig(epochs=2, batch_size=32, patience=5),
                       tmp_path / mode, seed=1, loss_terms=[hook])
        # k = 2 inference steps before each of the classifier's steps.
        assert int(hook.h_optimizer.iterations.numpy()) == 2 * expected
        assert any(np.abs(w.numpy() - b).max() > 0 for w, b in zip(hook.inference_model.trainable_weights, h_before))


def test_privacy_term_reaches_only_the_classifier(digits):
    arrays, _ = digits
    net = build_model("small_cnn", (8, 8, 1), 10)
    hook = AdversarialRegularisation(4.0, 1, "proper", arrays["train"], arrays["dev"], 10, 32, seed=0)
    TrainingModel(net, loss_terms=[hook])
    x, y = arrays["train"][0][:32], arrays["train"][1][:32]
    with tf.GradientTape(persistent=True) as tape:
        term = hook(x, y, net(x, training=True))
    assert float(term) < 0  # theta * mean log h, log h < 0
    # The classifier step updates only f's variables: h is frozen there (it trains in its own steps).
    h_ids = {id(v) for v in hook.inference_model.trainable_variables}
    assert not h_ids & {id(v) for v in TrainingModel(net, loss_terms=[hook]).net.trainable_variables}
    classifier_grads = tape.gradient(term, net.trainable_variables)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in classifier_grads)


def test_mcmia_game_can_pause_in_masked_retraining(digits):
    arrays, _ = digits
    net = build_model("small_cnn", (8, 8, 1), 10)
    [hook] = make_defense(DefenseConfig("mcmia", options=MCMIAOptions(retrain_game=False))).hooks(context(digits))
    kernel = net.get_layer("fc1").kernel
    TrainingModel(net, loss_terms=[hook])  # ADMM W-step: no masks -> game on
    assert hook.active
    TrainingModel(net, loss_terms=[hook], mask_pairs=[(kernel, tf.Variable(tf.ones_like(kernel)))])
    assert not hook.active and float(hook(None, arrays["train"][1][:4], tf.zeros((4, 10)))) == 0.0
    with pytest.raises(ConfigError, match="as_coded"):
        DefenseConfig("mcmia", options=MCMIAOptions(mode="as_coded"))
