"""K small classifiers trained at once as one stacked Keras model (shadow models, reference models, seeds).

A small model's training step is mostly per-op dispatch, and every separately trained model pays graph
tracing and set-up again. Here K copies of one architecture (tfprune_mia.models.stacked) train in one graph,
one compiled call per epoch, and never mix. Each model keeps what one-by-one training gives it
(fit_classifier's recipe):

- its own initialisation (built with `set_seed(seed)` then `build_model`, as one-by-one training does),
- its own training and dev sets and its own batch order (pass_order(n, seed, epoch)),
- its own loss: the summed loss of K disjoint models has each model's own gradient, and Adam, coupled
  weight decay and the step counter act per parameter, so each model takes the steps it would alone,
- its own early stopping (strict dev-accuracy improvement, patience) and best weights. A model that has
  stopped keeps being stepped until all have (its best weights are already kept) -- wasted arithmetic, not a
  different result.

Each trained model comes back as an ordinary Keras model of the original architecture holding its best
weights, saved and loaded like any other. Models whose training or dev sets differ in size are trained in
separate stacks (a shared step needs equal batch sizes; BatchNorm statistics forbid padding).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from tfprune_mia import fs
from tfprune_mia import faults
from tfprune_mia.backend import keras, tf
from tfprune_mia.batch_order import pass_order
from tfprune_mia.errors import CheckpointError, ConfigError, TrainingError
from tfprune_mia.io import atomic_path, write_json
from tfprune_mia.models.stacked import StackedModels
from tfprune_mia.training import FitResult, TrainConfig, apply_gradients

Arrays = Tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ModelJob:
    """One model to train: its training set, dev set and seed (initialisation and batch order)."""

    train: Arrays
    dev: Arrays
    seed: int


class _StackedEpochs:
    """One epoch of all K models (training steps, then the dev pass) per compiled call."""

    def __init__(self, stacked: StackedModels, jobs: Sequence[ModelJob], config: TrainConfig,
                 optimizer: keras.optimizers.Optimizer):
        self.model, self.config, self.optimizer = stacked.model, config, optimizer
        self.seeds = tf.constant([int(job.seed) for job in jobs], tf.int64)
        self.x = tf.constant(np.stack([job.train[0] for job in jobs]))
        self.y = tf.constant(np.stack([job.train[1] for job in jobs]).astype(np.int64))
        self.dev_x = tf.constant(np.stack([job.dev[0] for job in jobs]))
        self.dev_y = tf.constant(np.stack([job.dev[1] for job in jobs]).astype(np.int64))
        self.num_samples = len(jobs[0].train[1])
        self.num_models = len(jobs)
        self.dev_batch_size = max(config.batch_size, 512)
        optimizer.build(self.model.trainable_variables)
        self._epoch = tf.function(self._run_epoch)

    @staticmethod
    def _per_model_loss(y, logits):
        # y [K, b], logits [b, K, C] -> [K] batch-mean cross-entropies, as SparseCategoricalCrossentropy each
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.transpose(logits, (1, 0, 2)))
        return tf.reduce_mean(ce, axis=1)

    def _correct(self, y, logits):
        predicted = tf.argmax(tf.transpose(logits, (1, 0, 2)), axis=-1, output_type=y.dtype)
        return tf.reduce_sum(tf.cast(tf.equal(predicted, y), tf.float32), axis=1)

    def _run_epoch(self, epoch):
        K, batch = self.num_models, self.config.batch_size
        orders = tf.stack([pass_order(self.num_samples, self.seeds[k], epoch) for k in range(K)])
        steps = -(-self.num_samples // batch)
        variables = self.model.trainable_variables
        loss_sum, correct = tf.zeros([K]), tf.zeros([K])
        for step in tf.range(steps):
            index = orders[:, step * batch:(step + 1) * batch]
            x = tf.gather(self.x, index, axis=1, batch_dims=1)
            y = tf.gather(self.y, index, axis=1, batch_dims=1)
            x = tf.transpose(x, (1, 0, *range(2, x.shape.rank)))
            with tf.GradientTape() as tape:
                logits = self.model(x, training=True)
                losses = self._per_model_loss(y, logits)
                # Disjoint models: the gradient of the sum is each model's own gradient.
                total = tf.reduce_sum(losses)
                if self.model.losses:
                    total += tf.add_n(self.model.losses)
            gradients = tape.gradient(total, variables)
            if self.config.weight_decay:
                gradients = [g + self.config.weight_decay * v for g, v in zip(gradients, variables)]
            apply_gradients(self.optimizer, gradients, variables)
            loss_sum += losses
            correct += self._correct(y, logits)
        logs = {"loss": loss_sum / tf.cast(steps, tf.float32),
                "accuracy": correct / float(self.num_samples)}
        dev_size = self.dev_y.shape[1]
        dev_loss, dev_correct, batches = tf.zeros([K]), tf.zeros([K]), 0.0
        for start in range(0, dev_size, self.dev_batch_size):  # the dev set's size is fixed: unrolled
            x = self.dev_x[:, start:start + self.dev_batch_size]
            y = self.dev_y[:, start:start + self.dev_batch_size]
            logits = self.model(tf.transpose(x, (1, 0, *range(2, x.shape.rank))), training=False)
            dev_loss += self._per_model_loss(y, logits)
            dev_correct += self._correct(y, logits)
            batches += 1.0
        logs["val_loss"] = dev_loss / batches
        logs["val_accuracy"] = dev_correct / float(dev_size)
        return logs

    def run_epoch(self, epoch: int) -> Dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self._epoch(tf.constant(epoch, tf.int64)).items()}


class _StackCheckpoint:
    """Resumable state of one stack: model and optimiser (TF checkpoint), per-model early-stopping state and
    best weights (state.json + best_weights.npz), written after the first epoch, every `every_s` seconds and
    after the last epoch, in that order, so state.json always names a complete checkpoint."""

    # The stacked model's variable layout. A TF checkpoint of another layout would restore nothing (its names
    # differ) and expect_partial() would hide that, so state.json records it and resume checks it.
    # 2: per-model weights on a new leading axis (before: grouped convolution kernels).
    LAYOUT = 2

    def __init__(self, directory: Path, model: keras.Model, optimizer, every_s: float):
        self.directory = fs.path(directory)
        self.every_s = float(every_s)
        self.manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                                                  str(self.directory / "last"), max_to_keep=2)
        self.last_save: Optional[float] = None

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def due(self, final: bool) -> bool:
        return final or self.last_save is None or time.monotonic() - self.last_save >= self.every_s

    def save(self, epoch: int, state: dict, best_weights: List[Optional[Dict[str, List[np.ndarray]]]]) -> None:
        path = self.manager.save(checkpoint_number=epoch)
        faults.point("train.checkpoint")
        arrays = {f"{k}/{name}/{i}": w for k, model in enumerate(best_weights) if model
                  for name, values in model.items() for i, w in enumerate(values)}
        best_file = self.directory / f"best_weights-{epoch}.npz"
        with atomic_path(best_file) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        write_json(self.state_path, {**state, "layout": self.LAYOUT, "epoch": epoch, "best_file": best_file.name,
                                     "checkpoint": os.path.relpath(path, str(self.directory))})
        for old in self.directory.glob("best_weights-*.npz"):
            if old.name != best_file.name:
                old.unlink()
        self.last_save = time.monotonic()
        faults.point("train.epoch")

    def resume(self, num_models: int):
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
            if state.get("layout") != self.LAYOUT:
                raise ValueError(f"written by a version with stacked layout {state.get('layout', 1)}, "
                                 f"this one has {self.LAYOUT}")
            self.manager.checkpoint.restore(str(self.directory / state["checkpoint"])).expect_partial()
            best: List[Optional[Dict[str, List[np.ndarray]]]] = [None] * num_models
            with fs.local_copy(self.directory / state["best_file"]) as best_file, \
                    np.load(best_file, allow_pickle=False) as data:
                for key in sorted(data.files, key=lambda key: int(key.rsplit("/", 1)[1])):
                    k, name, _ = key.split("/")
                    best[int(k)] = best[int(k)] or {}
                    best[int(k)].setdefault(name, []).append(data[key])
        except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise CheckpointError(f"batched training checkpoint in {self.directory} is missing or corrupt "
                                  f"({reason}); delete that directory to retrain from scratch") from None
        return state, best


def _train_stack(architecture: str, input_shape, num_classes: int, jobs: Sequence[ModelJob],
                 config: TrainConfig, work_dir: Path, checkpoint_every_s: float,
                 verbose: int) -> List[Tuple[keras.Model, FitResult]]:
    K = len(jobs)
    stacked = StackedModels(architecture, input_shape, num_classes, [job.seed for job in jobs])
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, epsilon=1e-8)
    epochs = _StackedEpochs(stacked, jobs, config, optimizer)
    checkpoint = _StackCheckpoint(work_dir, stacked.model, optimizer, checkpoint_every_s)
    best = [-math.inf] * K
    best_epoch, wait, stopped_at = [-1] * K, [0] * K, [None] * K
    best_weights: List[Optional[Dict[str, List[np.ndarray]]]] = [None] * K
    diverged: List[Optional[int]] = [None] * K
    initial_epoch = 0
    resumed = checkpoint.resume(K)
    if resumed:
        state, best_weights = resumed
        best, best_epoch, wait = state["best"], state["best_epoch"], state["wait"]
        stopped_at, diverged = state["stopped_at"], state["diverged"]
        initial_epoch = state["epoch"] + 1
        logging.info("resuming batched training from the epoch-%d checkpoint in %s", initial_epoch, work_dir)
    history: List[Dict[str, List[float]]] = [{} for _ in range(K)]
    epoch = initial_epoch
    while epoch < config.epochs and any(s is None for s in stopped_at):
        logs = epochs.run_epoch(epoch)
        improved = []
        for k in range(K):
            if stopped_at[k] is not None:
                continue
            for name, values in logs.items():
                history[k].setdefault(name, []).append(float(values[k]))
            if not np.isfinite(logs["loss"][k]):
                diverged[k] = stopped_at[k] = epoch
                continue
            if logs["val_accuracy"][k] > best[k]:
                best[k], best_epoch[k], wait[k] = float(logs["val_accuracy"][k]), epoch, 0
                improved.append(k)
            else:
                wait[k] += 1
            if wait[k] >= config.patience:
                stopped_at[k] = epoch
        if improved:
            current = stacked.stacked_weights()
            for k in improved:
                best_weights[k] = stacked.member_weights(k, current)
        if verbose:
            logging.info("batched epoch %d/%d: dev accuracy %s", epoch + 1, config.epochs,
                         " ".join(f"{a:.3f}" for a in logs["val_accuracy"]))
        final = epoch + 1 >= config.epochs or all(s is not None for s in stopped_at)
        if checkpoint.due(final):
            checkpoint.save(epoch, {"best": best, "best_epoch": best_epoch, "wait": wait,
                                    "stopped_at": stopped_at, "diverged": diverged}, best_weights)
        epoch += 1
    bad = [k for k in range(K) if diverged[k] is not None]
    if bad:
        raise TrainingError(f"training loss became NaN/inf for batched model(s) {bad} (epochs "
                            f"{[diverged[k] + 1 for k in bad]}); lower the learning rate or check their data")
    results = []
    for k in range(K):
        if best_weights[k] is None:
            raise TrainingError(f"batched model {k} finished without a single evaluated epoch")
        net = stacked.extract(k, best_weights[k])
        runs = len(history[k].get("loss", []))
        results.append((net, FitResult(best_epoch[k], best[k], runs, history[k],
                                       epochs_completed=initial_epoch + runs)))
    return results


def fit_classifiers(architecture: str, input_shape, num_classes: int, jobs: Sequence[ModelJob],
                    config: TrainConfig, work_dir: Path, checkpoint_every_s: float = 30.0,
                    verbose: int = 0) -> List[Tuple[keras.Model, FitResult]]:
    """Train one model per job at once; return (ordinary Keras model with its best weights, FitResult) per
    job, in order. Jobs whose training and dev sets have the same sizes share one stack; each stack
    checkpoints into work_dir/stack-<train size>-<dev size> and resumes from there."""
    if not jobs:
        raise ConfigError("fit_classifiers needs at least one job")
    groups: Dict[Tuple[int, int], List[int]] = {}
    for index, job in enumerate(jobs):
        if len(job.train[0]) != len(job.train[1]) or len(job.dev[0]) != len(job.dev[1]):
            raise ConfigError(f"job {index}: inputs and labels differ in length; pass (x, y) of equal length")
        groups.setdefault((len(job.train[1]), len(job.dev[1])), []).append(index)
    results: List[Optional[Tuple[keras.Model, FitResult]]] = [None] * len(jobs)
    for (train_size, dev_size), indices in groups.items():
        trained = _train_stack(architecture, input_shape, num_classes, [jobs[i] for i in indices], config,
                               fs.path(work_dir) / f"stack-{train_size}-{dev_size}", checkpoint_every_s, verbose)
        for index, result in zip(indices, trained):
            results[index] = result
    return results
