import numpy as np
import pytest

from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.data import load_dataset
from tfprune_mia.defenses import DefenseConfig, DefenseContext, DPOptions, make_defense
from tfprune_mia.defenses.accounting import DpSgdStage, composed_epsilon
from tfprune_mia.defenses.dp import DPTraining, calibrate_noise, dp_epsilon
from tfprune_mia.errors import ConfigError
from tfprune_mia.models import build_model
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import FitResult, TrainConfig, TrainingModel, fit_classifier


def linear_model():
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros",
                                                                  name="fc")])
    return net


def one_dp_step(net, x, y, hook, mask_pairs=(), learning_rate=1.0):
    model = TrainingModel(net, loss_terms=[hook], mask_pairs=mask_pairs)
    model.compile(optimizer=hook.make_optimizer(TrainConfig(learning_rate=learning_rate)))
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(len(y)), epochs=1, verbose=0)


def test_each_example_is_clipped_separately_and_masked_entries_do_not_count():
    """sigma = 0, SGD lr 1: the step is minus the mean of per-example gradients, each clipped to C after the
    pruned entries were zeroed. One example with a huge input must not dominate."""
    # Example 0 has norm 0.71 once its pruned row is zeroed but 2.2 with it: masking before clipping matters.
    x = np.array([[1.0, 0.0, 3.0], [0.0, 100.0, 0.0]], np.float32)
    y = np.array([0, 1])
    net = linear_model()
    kernel = net.get_layer("fc").kernel
    mask = tf.Variable(np.array([[1, 1], [1, 1], [0, 0]], np.float32), trainable=False)
    one_dp_step(net, x, y, DPTraining(0.0, 1.0, "sgd"), mask_pairs=[(kernel, mask)])
    # Per-example CE gradients at zero weights: dL/dW = x^T (softmax - onehot) = x^T ([.5,.5] - onehot).
    grads = [np.outer(xi, np.array([0.5, 0.5]) - np.eye(2)[yi]) for xi, yi in zip(x, y)]
    clipped = [g * min(1.0, 1.0 / np.linalg.norm(g * mask.numpy())) * mask.numpy() for g in grads]
    np.testing.assert_allclose(kernel.numpy(), -np.mean(clipped, axis=0), atol=1e-6)
    assert np.all(kernel.numpy()[2] == 0)


def test_noise_is_added_with_the_configured_scale():
    x = np.zeros((4, 3), np.float32)  # zero gradients: the step is pure noise / batch size
    y = np.zeros(4, np.int64)
    set_seed(0)
    net = linear_model()
    one_dp_step(net, x, y, DPTraining(noise_multiplier=2.0, l2_norm_clip=0.5, optimizer="sgd"))
    update = net.get_layer("fc").kernel.numpy()
    assert np.std(update) > 0  # noise std C * sigma / B = 0.25; 6 draws
    assert np.abs(update).max() < 0.25 * 6


def test_dp_freezes_batch_norm_and_refuses_other_terms(tmp_path):
    set_seed(0)
    data = load_dataset("digits")
    train, dev = (data.x[:128], data.y[:128]), (data.x[128:192], data.y[128:192])
    net = build_model("small_cnn", (8, 8, 1), 10)
    bn = net.get_layer("bn1")
    moving_mean = bn.moving_mean.numpy().copy()
    gamma = bn.gamma.numpy().copy()
    [hook] = make_defense(DefenseConfig("dp", 1.0)).hooks(DefenseContext(train, dev, 10, TrainConfig(epochs=1), 0))
    fit = fit_classifier(net, train, dev, TrainConfig(epochs=1, batch_size=32), tmp_path, seed=0, loss_terms=[hook])
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving_mean)
    np.testing.assert_array_equal(bn.gamma.numpy(), gamma)
    assert fit.epochs_completed == 1
    with pytest.raises(ConfigError, match="cannot be combined"):
        TrainingModel(build_model("small_cnn", (8, 8, 1), 10), loss_terms=[hook, lambda x, y, z: 0.0])


def test_epsilon_accounting():
    q, delta = 0.01, 1e-5
    assert dp_epsilon(1.0, q, 1000, delta) < dp_epsilon(1.0, q, 4000, delta) < dp_epsilon(0.7, q, 4000, delta)
    assert dp_epsilon(0.0, q, 10, delta) == float("inf")
    sigma = calibrate_noise(3.0, q, 2000, delta)
    assert dp_epsilon(sigma, q, 2000, delta) <= 3.0 < dp_epsilon(sigma * 0.98, q, 2000, delta)


def test_summary_reports_both_accountants_at_a_delta_below_one_over_n_and_target_epsilon_calibrates():
    members = (np.zeros((1000, 3), np.float32), np.zeros(1000, np.int64))
    context = DefenseContext(members, members, 2, TrainConfig(epochs=5, batch_size=100), 0)
    fit = FitResult(best_epoch=2, best_dev_accuracy=0.5, epochs_run=4, history={}, epochs_completed=4)
    summary = make_defense(DefenseConfig("dp", 1.1)).summary(context, fit)
    assert summary["delta"] == pytest.approx(1e-5) and summary["steps"] == 40  # min(1e-5, 1000^-1.1)
    assert summary["epsilon"] == pytest.approx(dp_epsilon(1.1, 0.1, 40, 1e-5))
    assert summary["epsilon_pld"] == pytest.approx(dp_epsilon(1.1, 0.1, 40, 1e-5, "pld"))
    assert summary["epsilon_pld"] < summary["epsilon"]  # PLD is the tighter upper bound
    assert summary["scope"] == "finetune" and summary["covers_released_model"] is False
    assert "epsilon" in summary["statement"].lower()
    calibrated = make_defense(DefenseConfig("dp", options=DPOptions(target_epsilon=2.0, delta=1e-5)))
    sigma = calibrated.noise_multiplier(context)
    assert dp_epsilon(sigma, 0.1, 50, 1e-5) == pytest.approx(2.0, rel=0.01)  # 5 epochs x 10 steps


def test_end_to_end_scope_composes_the_original_stage_and_covers_the_released_model():
    members = (np.zeros((1000, 3), np.float32), np.zeros(1000, np.int64))
    original = {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 100}
    config = DefenseConfig("dp", 1.1, DPOptions(scope="end_to_end"))
    context = DefenseContext(members, members, 2, TrainConfig(epochs=5, batch_size=100), 0,
                             prior_stages=(original,))
    fit = FitResult(best_epoch=2, best_dev_accuracy=0.5, epochs_run=4, history={}, epochs_completed=4)
    summary = make_defense(config).summary(context, fit)
    alone = dp_epsilon(1.1, 0.1, 40, 1e-5)
    composed = composed_epsilon([DpSgdStage(1.0, 0.1, 100), DpSgdStage(1.1, 0.1, 40)], 1e-5)
    assert summary["epsilon"] == pytest.approx(composed) and composed > alone
    assert summary["covers_released_model"] is True and len(summary["stages"]) == 2
    assert config.key.endswith("-e2e") and DefenseConfig("dp", 1.1).key != config.key
    with pytest.raises(ConfigError, match="dp_target_epsilon cannot be combined with dp_scope=end_to_end"):
        DPOptions(scope="end_to_end", target_epsilon=4.0)


def test_end_to_end_refuses_pruners_that_train_before_masking():
    dp = DefenseConfig("dp", options=DPOptions(scope="end_to_end"))
    with pytest.raises(ConfigError, match="dp_scope=end_to_end needs masks chosen from the private weights"):
        ExperimentConfig(dataset="digits", defense=dp, prune=PruneConfig("admm", 0.7))
    with pytest.raises(ConfigError, match="--dp_scope=finetune"):
        ExperimentConfig(dataset="digits", model="small_cnn", defense=dp, prune=PruneConfig("slimming", 0.5))
    ExperimentConfig(dataset="digits", defense=dp, prune=PruneConfig("l1_unstructured", 0.7))
    ExperimentConfig(dataset="digits", defense=DefenseConfig("dp"), prune=PruneConfig("admm", 0.7))
