"""K small models trained as one stacked model: the same models as one-by-one training, extractable as
ordinary Keras models, resumable."""
import json

import numpy as np
import pytest

from tfprune_mia.backend import keras, set_seed
from tfprune_mia.data import load_dataset
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.models import build_model
from tfprune_mia.models.stacked import StackedModels, build_stacked
from tfprune_mia.training import TrainConfig, evaluate_accuracy, fit_classifier
from tfprune_mia.training_batched import ModelJob, fit_classifiers
from tests.leaks import live_graphs


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def jobs_for(data, count, train_size=300, dev_size=150):
    rng = np.random.default_rng(0)
    jobs = []
    for k in range(count):
        order = rng.permutation(len(data))
        train, dev = order[:train_size], order[train_size:train_size + dev_size]
        jobs.append(ModelJob((data.x[train], data.y[train]), (data.x[dev], data.y[dev]), seed=20 + k))
    return jobs


@pytest.mark.parametrize("architecture,input_shape", [("columnfc", (8, 8, 1)), ("small_cnn", (8, 8, 1)),
                                                      ("lenet5", (28, 28, 1))])
def test_stacked_model_computes_each_member_exactly(architecture, input_shape):
    stacked = StackedModels(architecture, input_shape, 10, seeds=[1, 2, 3])
    x = np.random.default_rng(0).random((6, *input_shape)).astype(np.float32)
    outputs = stacked.model(np.stack([x] * 3, axis=1), training=False).numpy()
    for k, seed in enumerate([1, 2, 3]):
        set_seed(seed)  # the initialisation one-by-one training gives this seed
        alone = build_model(architecture, input_shape, 10)
        np.testing.assert_allclose(outputs[:, k], alone(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs[:, 0], outputs[:, 1])


def test_batched_training_gives_the_models_of_one_by_one_training(digits, tmp_path):
    # small_cnn has no dropout, so with the same initialisation and batches the models agree up to float
    # rounding; the dev accuracies then agree.
    jobs = jobs_for(digits, 3)
    config = TrainConfig(epochs=3, batch_size=64)
    batched = fit_classifiers("small_cnn", digits.input_shape, 10, jobs, config, tmp_path / "batched")
    for k, (job, (net, fit)) in enumerate(zip(jobs, batched)):
        set_seed(job.seed)
        alone = build_model("small_cnn", digits.input_shape, 10)
        alone_fit = fit_classifier(alone, job.train, job.dev, config, tmp_path / f"alone{k}", seed=job.seed)
        assert fit.best_dev_accuracy == pytest.approx(alone_fit.best_dev_accuracy, abs=0.02)
        assert evaluate_accuracy(net, *job.dev) == pytest.approx(fit.best_dev_accuracy, abs=1e-6)
        np.testing.assert_allclose(net.predict(job.dev[0], verbose=0), alone.predict(job.dev[0], verbose=0),
                                   rtol=1e-2, atol=1e-2)


def test_accuracy_distribution_matches_one_by_one_with_dropout(digits, tmp_path):
    # columnfc has dropout, whose masks differ between the two ways: compare the accuracy distributions.
    jobs = jobs_for(digits, 4)
    config = TrainConfig(epochs=4, batch_size=64)
    batched = [fit.best_dev_accuracy for _, fit in
               fit_classifiers("columnfc", digits.input_shape, 10, jobs, config, tmp_path / "batched")]
    alone = []
    for k, job in enumerate(jobs):
        set_seed(job.seed)
        net = build_model("columnfc", digits.input_shape, 10)
        alone.append(fit_classifier(net, job.train, job.dev, config, tmp_path / f"alone{k}",
                                    seed=job.seed).best_dev_accuracy)
    assert np.mean(batched) > 0.7
    assert abs(np.mean(batched) - np.mean(alone)) < 0.03
    assert np.max(np.abs(np.subtract(batched, alone))) < 0.06


def test_a_trained_stack_leaves_no_graph_behind(digits, tmp_path):
    def train(name):
        fit_classifiers("columnfc", digits.input_shape, 10, jobs_for(digits, 2, 100, 50), TrainConfig(epochs=1),
                        tmp_path / name)

    train("first")
    graphs = live_graphs()
    train("second")
    assert live_graphs() <= graphs


def test_extracted_model_is_an_ordinary_model_equal_to_its_stack_slice(digits, tmp_path):
    stacked = StackedModels("small_cnn", digits.input_shape, 10, seeds=[4, 5])
    x = digits.x[:32]
    stacked.model(np.stack([x, x], axis=1), training=True)  # move BN statistics off their initial values
    outputs = stacked.model(np.stack([x, x], axis=1), training=False).numpy()
    net = stacked.extract(1)
    np.testing.assert_allclose(net(x, training=False).numpy(), outputs[:, 1], rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "member.h5")
    net.save(path, save_format="h5")
    restored = keras.models.load_model(path, compile=False)
    assert restored.name == "small_cnn" and [l.name for l in restored.layers] == [l.name for l in net.layers]
    np.testing.assert_array_equal(restored(x, training=False).numpy(), net(x, training=False).numpy())


def test_resumed_batched_training_ends_as_an_uninterrupted_one(digits, tmp_path):
    jobs = jobs_for(digits, 2, train_size=200, dev_size=100)
    whole = fit_classifiers("small_cnn", digits.input_shape, 10, jobs, TrainConfig(epochs=3, batch_size=64),
                            tmp_path / "whole", checkpoint_every_s=3600)
    fit_classifiers("small_cnn", digits.input_shape, 10, jobs, TrainConfig(epochs=2, batch_size=64),
                    tmp_path / "parts", checkpoint_every_s=3600)
    resumed = fit_classifiers("small_cnn", digits.input_shape, 10, jobs, TrainConfig(epochs=3, batch_size=64),
                              tmp_path / "parts", checkpoint_every_s=3600)
    for (net, fit), (reference, reference_fit) in zip(resumed, whole):
        assert fit.epochs_run == 1 and fit.epochs_completed == 3
        assert fit.best_epoch == reference_fit.best_epoch
        for a, b in zip(net.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_architectures_that_are_not_plain_chains_are_refused():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="a")(inputs)
    residual = keras.layers.Add(name="add")([inputs, hidden])
    with pytest.raises(ConfigError, match="plain layer chains"):
        build_stacked(keras.Model(inputs, keras.layers.Dense(2)(residual)), 2)
    with pytest.raises(ConfigError, match="at least one job"):
        fit_classifiers("columnfc", (8, 8, 1), 10, [], TrainConfig(), "unused")


def test_a_checkpoint_of_another_stacked_layout_is_refused_not_silently_ignored(digits, tmp_path):
    jobs = jobs_for(digits, 2, train_size=100, dev_size=50)
    fit_classifiers("columnfc", digits.input_shape, 10, jobs, TrainConfig(epochs=1), tmp_path)
    (state_path,) = tmp_path.glob("stack-*/state.json")
    state = json.loads(state_path.read_text())
    del state["layout"]  # as the grouped-convolution stack wrote it
    state_path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="stacked layout 1"):
        fit_classifiers("columnfc", digits.input_shape, 10, jobs, TrainConfig(epochs=2), tmp_path)
