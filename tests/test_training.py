import json

import numpy as np
import pytest

from tfprune_mia.backend import set_seed, tf
from tfprune_mia.data import load_dataset
from tfprune_mia.errors import ConfigError, TrainingError
from tfprune_mia.models import build_model
from tfprune_mia.training import TrainConfig, evaluate_accuracy, fit_classifier, runs_between_steps
from tests.leaks import live_graphs


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(data))
    train, dev = order[:600], order[600:900]
    return (data.x[train], data.y[train]), (data.x[dev], data.y[dev])


def test_fit_learns_digits_and_keeps_best_weights(digits, tmp_path):
    set_seed(1)
    net = build_model("small_cnn", (8, 8, 1), 10)
    fit = fit_classifier(net, *digits, TrainConfig(epochs=4, batch_size=32), tmp_path, seed=1)
    accuracy = evaluate_accuracy(net, *digits[1])
    assert accuracy > 0.8
    # The restored weights are the best epoch's: their dev accuracy is the recorded best.
    assert accuracy == pytest.approx(fit.best_dev_accuracy, abs=1e-6)
    assert (tmp_path / "checkpoints" / "best_weights.h5").exists()
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents*"))


def test_a_trained_model_leaves_no_graph_behind(digits, tmp_path):
    # The optimiser's cross-replica gradient sum is a tf.custom_gradient, which TF registers process-wide for
    # good: every trained model's epoch graph stayed alive with its training and dev data.
    def train(seed):
        set_seed(seed)
        net = build_model("columnfc", (8, 8, 1), 10)
        fit_classifier(net, *digits, TrainConfig(epochs=1), tmp_path / str(seed), seed=seed)
        evaluate_accuracy(net, *digits[1])

    train(0)
    graphs = live_graphs()
    train(1)
    train(2)
    assert live_graphs() <= graphs


def test_resume_continues_from_the_last_epoch(digits, tmp_path):
    set_seed(2)
    net = build_model("small_cnn", (8, 8, 1), 10)
    fit_classifier(net, *digits, TrainConfig(epochs=2, batch_size=64, patience=10), tmp_path, seed=2)
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    resumed = build_model("small_cnn", (8, 8, 1), 10)
    fit = fit_classifier(resumed, *digits, TrainConfig(epochs=3, batch_size=64, patience=10), tmp_path, seed=2)
    assert fit.epochs_run == 1  # only the third epoch ran
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["epoch"] == 2


def test_loss_terms_enter_the_gradient(digits, tmp_path):
    set_seed(3)
    net = build_model("small_cnn", (8, 8, 1), 10)
    bias = net.get_layer("classifier").bias
    # A term whose gradient dwarfs CE's pushes every bias up; Adam then moves each by ~lr per step, whereas
    # CE alone would push some classes' biases down.
    push_up = lambda x, y, logits: -1e4 * tf.reduce_sum(bias)  # noqa: E731
    fit_classifier(net, *digits, TrainConfig(epochs=1, batch_size=64, weight_decay=0.0), tmp_path, seed=3,
                   loss_terms=[push_up])
    steps = int(np.ceil(600 / 64))
    np.testing.assert_allclose(bias.numpy(), steps * 1e-3, rtol=0.02)


def test_masks_hold_pruned_weights_at_zero(digits, tmp_path):
    set_seed(4)
    net = build_model("small_cnn", (8, 8, 1), 10)
    kernel = net.get_layer("classifier").kernel
    mask = tf.Variable(tf.cast(tf.random.uniform(kernel.shape) > 0.5, kernel.dtype), trainable=False)
    kernel.assign(kernel * mask)
    fit_classifier(net, *digits, TrainConfig(epochs=1, batch_size=64), tmp_path, seed=4,
                   mask_pairs=[(kernel, mask)])
    assert np.all(kernel.numpy()[mask.numpy() == 0] == 0)
    assert np.count_nonzero(kernel.numpy()) == int(mask.numpy().sum())


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(digits, tmp_path):
    set_seed(5)
    net = build_model("small_cnn", (8, 8, 1), 10)
    steps = tf.Variable(0)

    def nan_after_first_epoch(x, y, logits):
        steps.assign_add(1)
        return tf.where(steps > 10, np.nan, 0.0)  # 600 samples / 64 = 10 steps per epoch

    with pytest.raises(TrainingError, match="NaN/inf in epoch 2; the last good checkpoint"):
        fit_classifier(net, *digits, TrainConfig(epochs=3, batch_size=64), tmp_path, seed=5,
                       loss_terms=[nan_after_first_epoch])
    assert all(np.all(np.isfinite(w)) for w in net.get_weights())
    assert (tmp_path / "checkpoints" / "best_weights.h5").exists()


def test_nan_loss_in_the_first_epoch_says_nothing_was_kept(digits, tmp_path):
    set_seed(6)
    net = build_model("small_cnn", (8, 8, 1), 10)
    with pytest.raises(TrainingError, match="before any epoch completed"):
        fit_classifier(net, *digits, TrainConfig(epochs=2, batch_size=64), tmp_path, seed=6,
                       loss_terms=[lambda x, y, logits: tf.constant(np.inf)])


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("learning_rate", 0.0),
                                         ("weight_decay", -1.0), ("patience", 0)])
def test_bad_train_config_is_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_compiled_epochs_train_exactly_as_keras_fit_on_the_same_batches(digits, tmp_path):
    # A callback with a per-batch hook forces the per-step Keras fit path; without one the epoch runs as one
    # compiled call. Both must see the same batches (pass_order) and take the same steps.
    class BatchHook(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    assert runs_between_steps(BatchHook()) and not runs_between_steps(tf.keras.callbacks.Callback())
    nets = []
    for path, callbacks in (("compiled", ()), ("keras", (BatchHook(),))):
        set_seed(7)
        net = build_model("columnfc", (8, 8, 1), 10)
        fit = fit_classifier(net, *digits, TrainConfig(epochs=3, batch_size=64, patience=10), tmp_path / path,
                             seed=7, callbacks=callbacks)
        nets.append((net, fit))
    (compiled, compiled_fit), (keras_net, keras_fit) = nets
    for a, b in zip(compiled.get_weights(), keras_net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert compiled_fit.history.keys() == keras_fit.history.keys() >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(compiled_fit.history["val_accuracy"], keras_fit.history["val_accuracy"])
    np.testing.assert_allclose(compiled_fit.history["loss"], keras_fit.history["loss"], rtol=1e-5)


def test_checkpoints_by_time_and_resume_ends_as_an_uninterrupted_run(digits, tmp_path):
    # small_cnn: no dropout, whose stateful RNG would differ between a resumed and an uninterrupted process.
    config = TrainConfig(epochs=4, batch_size=64, patience=10)
    set_seed(8)
    uninterrupted = build_model("small_cnn", (8, 8, 1), 10)
    initial = uninterrupted.get_weights()
    fit_classifier(uninterrupted, *digits, config, tmp_path / "whole", seed=8, checkpoint_every_s=3600)
    # With an hour between checkpoints only the first and the last epoch are checkpointed.
    names = sorted(p.name for p in (tmp_path / "whole" / "checkpoints" / "last").glob("ckpt-*.index"))
    assert names == ["ckpt-0.index", "ckpt-3.index"]
    assert list((tmp_path / "whole" / "tensorboard" / "validation").glob("events.out.tfevents*"))

    interrupted = build_model("small_cnn", (8, 8, 1), 10)
    interrupted.set_weights(initial)
    fit_classifier(interrupted, *digits, TrainConfig(epochs=2, batch_size=64, patience=10), tmp_path / "parts",
                   seed=8, checkpoint_every_s=3600)
    resumed = build_model("small_cnn", (8, 8, 1), 10)
    fit = fit_classifier(resumed, *digits, config, tmp_path / "parts", seed=8, checkpoint_every_s=3600)
    assert fit.epochs_run == 2 and fit.epochs_completed == 4
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_evaluate_accuracy_equals_keras_predict(digits):
    set_seed(2)
    net = build_model("small_cnn", (8, 8, 1), 10)
    (x, y), (dev_x, dev_y) = digits
    for batch_size in (1024, 256, 7):  # one partial batch; several with a partial last one
        expected = float(np.mean(np.argmax(net.predict(x, batch_size=batch_size, verbose=0), axis=1) == y))
        assert evaluate_accuracy(net, x, y, batch_size=batch_size) == expected
    assert evaluate_accuracy(net, dev_x, dev_y) == float(np.mean(np.argmax(net.predict(dev_x, verbose=0), 1) == dev_y))
