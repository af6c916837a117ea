"""Fine-tuning under pruning runs as whole compiled epochs; it must end exactly where tfmot's per-step Keras fit
(its own UpdatePruningStep + PruningSummaries callbacks, as fine-tuning ran before) ends: the same masks, the
same weights, the same dev accuracies."""
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from pruning_nets import tiny_cnn
from tfprune_mia.backend import keras, set_seed
from tfprune_mia.pruning import L1UnstructuredOptions, PruneConfig, prune_and_finetune_detailed
from tfprune_mia.pruning.magnitude import L1Unstructured
from tfprune_mia.pruning.structured import L1Filter
from tfprune_mia.training import TrainConfig, runs_between_steps

FINETUNE = TrainConfig(epochs=3, batch_size=64, patience=5)


class BatchHook(keras.callbacks.Callback):
    """A callback with a per-batch hook: it keeps fit_classifier on the per-step Keras fit."""

    def on_train_batch_begin(self, batch, logs=None):
        pass


def finetune(digits, config, directory, per_step, monkeypatch, pruner_class):
    if per_step:
        if pruner_class is L1Unstructured:
            monkeypatch.setattr(L1Unstructured, "callbacks", lambda self, log_dir: [
                tfmot.sparsity.keras.UpdatePruningStep(),
                tfmot.sparsity.keras.PruningSummaries(log_dir=str(log_dir))])
        else:
            monkeypatch.setattr(pruner_class, "callbacks", lambda self, log_dir: [BatchHook()], raising=False)
    set_seed(3)
    net = tiny_cnn()
    result = prune_and_finetune_detailed(net, config, *digits, FINETUNE, directory, seed=3)
    monkeypatch.undo()
    return result


@pytest.mark.parametrize("config,pruner_class", [
    (PruneConfig("l1_unstructured", 0.7), L1Unstructured),
    (PruneConfig("l1_unstructured", 0.6, L1UnstructuredOptions(schedule="polynomial")), L1Unstructured),
    (PruneConfig("l1_filter", 0.5), L1Filter),
], ids=["l1_unstructured", "l1_unstructured_polynomial", "l1_filter"])
def test_compiled_fine_tuning_ends_as_the_per_step_fit(digits, tmp_path, monkeypatch, config, pruner_class):
    per_step = finetune(digits, config, tmp_path / "per_step", True, monkeypatch, pruner_class)
    compiled = finetune(digits, config, tmp_path / "compiled", False, monkeypatch, pruner_class)
    assert not any(map(runs_between_steps, L1Unstructured(PruneConfig()).callbacks(tmp_path / "tb")))
    old, new = per_step.model.get_weights(), compiled.model.get_weights()
    assert [w.shape for w in old] == [w.shape for w in new]
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a == 0, b == 0)  # identical masks
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert per_step.fit.best_epoch == compiled.fit.best_epoch
    np.testing.assert_allclose(per_step.fit.history["val_accuracy"], compiled.fit.history["val_accuracy"])
    np.testing.assert_allclose(per_step.fit.history["loss"], compiled.fit.history["loss"], rtol=1e-5)
    if pruner_class is L1Unstructured:
        assert list((tmp_path / "compiled" / "tensorboard" / "metrics").glob("events.out.tfevents*"))


def test_compiled_fine_tuning_resumed_after_a_crash_ends_as_an_uninterrupted_run(digits, tmp_path, monkeypatch):
    # Gradual (polynomial) pruning: the resumed run must continue the schedule at the checkpointed pruning step.
    from tfprune_mia import faults

    config = PruneConfig("l1_unstructured", 0.6, L1UnstructuredOptions(schedule="polynomial"))
    set_seed(4)
    weights = tiny_cnn().get_weights()

    def run(directory):
        net = tiny_cnn()
        net.set_weights(weights)
        return prune_and_finetune_detailed(net, config, *digits, FINETUNE, directory, seed=4)

    whole = run(tmp_path / "whole")
    monkeypatch.setenv(faults.ENV, "train.epoch:1:enospc")  # fails right after the first epoch's checkpoint
    faults.reset()
    with pytest.raises(OSError):
        run(tmp_path / "parts")
    monkeypatch.delenv(faults.ENV)
    faults.reset()
    resumed = run(tmp_path / "parts")
    assert resumed.fit.epochs_run == FINETUNE.epochs - 1 and resumed.fit.epochs_completed == FINETUNE.epochs
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a == 0, b == 0)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
