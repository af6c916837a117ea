"""Classifier training as in the authors' code (docs/paper_map.md): Adam 1e-3 (eps 1e-8), coupled L2 5e-4 on
every trainable variable, batch 128, early stopping on strict dev-accuracy improvement with the best weights
restored, resumable epoch checkpoints, TensorBoard logs, and hooks for extra loss terms and held masks.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from absl import logging

from tfprune_mia import fs
from tfprune_mia.backend import keras, tf
from tfprune_mia.batch_order import epoch_stream, pass_order
from tfprune_mia.errors import ConfigError, TrainingError
from tfprune_mia.progress import ProgressCallback
from tfprune_mia.training_callbacks import DevEvaluation, EpochCheckpoint, EpochSummaries, dev_metrics

# A loss term gets (inputs, labels, logits) of a training batch and returns a scalar added to the loss.
LossTerm = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
# (variable, mask) pairs: after every optimiser step variable <- variable * mask, so pruned weights stay 0.
MaskPairs = Sequence[Tuple[tf.Variable, tf.Variable]]


class TrainingHook:
    """A loss term that also takes part in the training step (defenses need more than a loss term:
    adversarial regularisation trains its inference model before each classifier step, DP-SGD computes
    clipped and noised per-example gradients with its own optimiser).

    It travels wherever loss terms travel (`loss_terms=`), so every trainer built on TrainingModel -- plain
    fine-tuning, a pruner's pre-phase such as ADMM's W-step -- runs it without new parameters. Every method
    has a neutral default.
    """

    # Fit at most this many batches per epoch (None: one pass over the training set).
    steps_per_epoch: Optional[int] = None

    def attach(self, model: "TrainingModel") -> None:
        """Called once when a TrainingModel is built around a net, before it is compiled."""

    def make_optimizer(self, config: "TrainConfig") -> Optional[keras.optimizers.Optimizer]:
        """An optimiser replacing the default Adam (None: keep the default)."""
        return None

    def before_step(self, x: tf.Tensor, y: tf.Tensor) -> None:
        """Runs inside the training step before the classifier's forward pass, outside its gradient tape."""

    def __call__(self, x: tf.Tensor, y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        return tf.constant(0.0)

    # True: this hook computes the gradients itself from the per-example loss vector (compute_gradients).
    computes_gradients = False

    def compute_gradients(self, tape: tf.GradientTape, per_example_loss: tf.Tensor,
                          variables: Sequence[tf.Variable]) -> List[tf.Tensor]:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 5e-4
    # Stop after this many consecutive epochs without strict dev-accuracy improvement (paper: counter > 5).
    patience: int = 6

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: must be at least 1")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate}: must be positive")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay}: must be >= 0")
        if self.patience < 1:
            raise ConfigError(f"patience={self.patience}: must be at least 1")


class TrainingModel(keras.Model):
    """Wraps a classifier `net` with the paper's training step; `net` itself stays a plain functional model.

    Coupled weight decay (g += wd * w on every variable, BN and biases included) is what PyTorch's Adam
    `weight_decay` does; Keras' own `weight_decay=` is decoupled (AdamW-like) and would differ.
    """

    def __init__(self, net: keras.Model, weight_decay: float = 0.0, loss: Optional[keras.losses.Loss] = None,
                 loss_terms: Sequence[LossTerm] = (), mask_pairs: MaskPairs = ()):
        super().__init__(name=f"train_{net.name}")
        self.net = net
        self.weight_decay = float(weight_decay)
        self.classification_loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_terms = list(loss_terms)
        self.mask_pairs = list(mask_pairs)
        self.hooks = [term for term in self.loss_terms if isinstance(term, TrainingHook)]
        gradient_hooks = [hook for hook in self.hooks if hook.computes_gradients]
        if len(gradient_hooks) > 1:
            raise ConfigError(f"{len(gradient_hooks)} training hooks want to compute the gradients "
                              "(e.g. two DP defenses); combine at most one of them")
        self.gradient_hook = gradient_hooks[0] if gradient_hooks else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # Hooks see the assembled model (net, masks) before anything compiles or traces it.
        for hook in self.hooks:
            hook.attach(self)

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def batch_loss(self, y, logits):
        """The classification loss's batch mean. Computed from the per-example losses: a Keras loss called with
        its default reduction refuses to run under a tf.distribute strategy outside compile()."""
        return tf.reduce_mean(self.classification_loss.call(y, logits))

    def compute_training_loss(self, x, y, logits, per_example: bool = False):
        # per_example: a [batch] vector, for DP-SGD's per-example clipping. A batch-level term would be added to
        # every element and couple the examples, so the DP hook refuses other data-dependent terms.
        loss = self.classification_loss.call(y, logits) if per_example else self.batch_loss(y, logits)
        for term in self.loss_terms:
            loss = loss + term(x, y, logits)
        if self.net.losses:
            loss = loss + tf.add_n(self.net.losses)
        return loss

    def train_step(self, data):
        x, y = data
        for hook in self.hooks:
            hook.before_step(x, y)
        variables = self.net.trainable_variables
        per_example = self.gradient_hook is not None
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if per_example and replicas > 1:
            raise ConfigError("a training hook that computes its own gradients (DP-SGD) does not run under a "
                              "multi-replica tf.distribute strategy; train it without --distribution")
        with tf.GradientTape() as tape:
            logits = self.net(x, training=True)
            loss = self.compute_training_loss(x, y, logits, per_example=per_example)
            # Under a strategy the optimiser sums the replicas' gradients, so each replica contributes its
            # share of the global-batch mean (and of the weight decay below); 1 replica: unchanged.
            replica_loss = loss * replica_share(y) if replicas > 1 else loss
        if per_example:
            gradients = self.gradient_hook.compute_gradients(tape, loss, variables)
            loss = tf.reduce_mean(loss)
        else:
            gradients = tape.gradient(replica_loss, variables)
        if self.weight_decay:
            decay = self.weight_decay / replicas
            gradients = [g + decay * v if g is not None else g for g, v in zip(gradients, variables)]
        apply_gradients(self.optimizer, gradients, variables)
        self.apply_masks()
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        logits = self.net(x, training=False)
        self.loss_tracker.update_state(self.batch_loss(y, logits))
        self.accuracy_tracker.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def apply_masks(self):
        if not self.mask_pairs:
            return
        context = tf.distribute.get_replica_context()
        if tf.distribute.has_strategy() and context is not None:
            # A mirrored variable cannot be assigned per replica; every replica holds the same weights and
            # masks, so apply them once for all replicas.
            context.merge_call(lambda strategy: self._apply_masks_across(strategy))
        else:
            for variable, mask in self.mask_pairs:
                variable.assign(variable * tf.cast(mask, variable.dtype))

    def _apply_masks_across(self, strategy: tf.distribute.Strategy) -> None:
        for variable, mask in self.mask_pairs:
            strategy.extended.update(variable, lambda v, m: v.assign(v * tf.cast(m, v.dtype)), args=(mask,))


def apply_gradients(optimizer: keras.optimizers.Optimizer, gradients: Sequence[tf.Tensor],
                    variables: Sequence[tf.Variable]) -> None:
    """optimizer.apply_gradients, without the cross-replica sum of the gradients when no tf.distribute strategy
    is active (one replica: the sum is the identity). Inside a tf.function that sum is a tf.custom_gradient, and
    TF 2.15 registers every traced custom gradient in its process-wide gradient registry for good, which keeps
    the traced function's whole graph alive with every tensor it captured: the training and dev sets of each
    model a process trains (measured: +15-35 MiB per small_cnn model on 2,250 Fashion-MNIST records)."""
    optimizer.apply_gradients(zip(gradients, variables), experimental_aggregate_gradients=tf.distribute.has_strategy())


def replica_share(y: tf.Tensor) -> tf.Tensor:
    """This replica's fraction of the global batch, inside a replica context. Not 1 / replicas: a last, partial
    batch splits unevenly (7 samples on 2 replicas: 4 and 3), and weighting the replicas' means equally then
    gave that step's loss another value than the one device's mean (measured: a different model after 3 epochs)."""
    local = tf.cast(tf.shape(y)[0], tf.float32)
    return local / tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)


class CompiledEpochs:
    """Whole training epochs of a TrainingModel inside one tf.function call, optionally with the dev pass.

    Keras `fit` pays Python, iterator and callback dispatch on every step and a separately set-up validation
    loop every epoch; for small models that is most of the epoch (a 400-sample ColumnFC epoch is 4 steps).
    Here the data are resident tensors, epoch e visits them in pass_order(n, seed, e) -- the batches
    `epoch_stream` yields for that epoch -- and the step loop is a graph loop, so one epoch is one call. The
    step itself is `TrainingModel.train_step` (same loss, weight decay, masks, optimiser), so the recipe is
    the one `fit` runs.
    """

    def __init__(self, trainer: TrainingModel, train: Tuple[np.ndarray, np.ndarray], batch_size: int, seed: int,
                 dev: Optional[Tuple[np.ndarray, np.ndarray]] = None, dev_batch_size: int = 512):
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be at least 1")
        self.trainer = trainer
        self.x, self.y = tf.constant(train[0]), tf.constant(train[1])
        self.num_samples = len(train[1])
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.dev = None if dev is None else (tf.constant(dev[0]), tf.constant(dev[1]))
        self.dev_batch_size = int(dev_batch_size)
        # Variables (optimiser slots) cannot be created inside the graph loop, so build them now.
        optimizer = trainer.optimizer
        if isinstance(optimizer, keras.optimizers.legacy.Optimizer):
            optimizer._create_all_weights(trainer.net.trainable_variables)
        else:
            optimizer.build(trainer.net.trainable_variables)
        self._epoch = tf.function(self._run_epoch)

    def _run_epoch(self, epoch):
        for metric in self.trainer.metrics:  # in the graph: eager resets cost more than a tiny epoch's dev pass
            metric.reset_state()
        order = pass_order(self.num_samples, self.seed, epoch)
        steps = -(-self.num_samples // self.batch_size)
        for step in tf.range(steps):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            self.trainer.train_step((tf.gather(self.x, index), tf.gather(self.y, index)))
        logs = {metric.name: metric.result() for metric in self.trainer.metrics}
        if self.dev is not None:
            logs["val_loss"], logs["val_accuracy"] = dev_metrics(self.trainer, *self.dev, self.dev_batch_size)
        self._names = list(logs)
        return tf.stack([tf.cast(value, tf.float32) for value in logs.values()])  # one transfer, not one per value

    def run_epoch(self, epoch: int) -> dict:
        """Train epoch `epoch` (0-based); return its mean training metrics (and val_loss/val_accuracy)."""
        values = self._epoch(tf.constant(epoch, tf.int64)).numpy()
        return {name: float(value) for name, value in zip(self._names, values)}


BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


def runs_between_steps(callback: keras.callbacks.Callback) -> bool:
    """Whether `callback` overrides a per-batch hook, which only Keras fit's per-step loop calls."""
    return any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) for hook in BATCH_HOOKS)


@dataclasses.dataclass
class FitResult:
    best_epoch: int
    best_dev_accuracy: float
    epochs_run: int
    history: dict
    # Epochs finished over all runs including resumed ones (DP accounting counts every step taken).
    epochs_completed: int = 0


def _fit_compiled(model: TrainingModel, train, dev, config: TrainConfig, seed: int, initial_epoch: int,
                  dev_batch_size: int, callbacks: Sequence[keras.callbacks.Callback], verbose: int) -> dict:
    """Epochs initial_epoch.. of fit_classifier as CompiledEpochs calls, the epoch-end callbacks driven by hand."""
    epochs = CompiledEpochs(model, train, config.batch_size, seed, dev=dev, dev_batch_size=dev_batch_size)
    steps = -(-len(train[1]) // config.batch_size)
    for callback in callbacks:
        callback.set_model(model)
        callback.set_params({"epochs": config.epochs, "steps": steps, "verbose": verbose})
    model.stop_training = False
    history: dict = {}
    for callback in callbacks:
        callback.on_train_begin()
    try:
        for epoch in range(initial_epoch, config.epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            logs = epochs.run_epoch(epoch)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            if verbose:
                logging.info("epoch %d/%d: %s", epoch + 1, config.epochs,
                             " ".join(f"{name} {value:.4f}" for name, value in logs.items()))
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        for callback in callbacks:
            callback.on_train_end()
    return history


def fit_classifier(net: keras.Model, train: Tuple[np.ndarray, np.ndarray], dev: Tuple[np.ndarray, np.ndarray],
                   config: TrainConfig, work_dir: Path, seed: int,
                   optimizer: Optional[keras.optimizers.Optimizer] = None,
                   loss: Optional[keras.losses.Loss] = None, loss_terms: Sequence[LossTerm] = (),
                   mask_pairs: MaskPairs = (), callbacks: Sequence[keras.callbacks.Callback] = (),
                   verbose: int = 0, checkpoint_every_s: float = 30.0) -> FitResult:
    """Train `net` in place; on return it holds the best-dev-accuracy weights.

    `work_dir` keeps the resumable checkpoint and TensorBoard logs; a checkpoint is written after the first
    epoch, at least every `checkpoint_every_s` seconds after that and after the last epoch (0: every epoch).
    Raises TrainingError on a non-finite loss (after restoring the last good weights).
    """
    work_dir = fs.path(work_dir)
    model = TrainingModel(net, config.weight_decay, loss=loss, loss_terms=loss_terms, mask_pairs=mask_pairs)
    hook_optimizers = [made for made in (hook.make_optimizer(config) for hook in model.hooks) if made is not None]
    if len(hook_optimizers) > 1:
        raise ConfigError("two training hooks bring their own optimiser; combine at most one of them")
    optimizer = optimizer or (hook_optimizers[0] if hook_optimizers else None) or keras.optimizers.Adam(
        learning_rate=config.learning_rate, epsilon=1e-8)
    hook_steps = [hook.steps_per_epoch for hook in model.hooks if hook.steps_per_epoch is not None]
    # Epochs may be shorter than one pass (hooks); the stream continues across them either way.
    steps = min(hook_steps) if hook_steps else -(-len(train[1]) // config.batch_size)
    # A whole epoch (with its dev pass) per compiled call, unless something must run between steps: Keras
    # callbacks with per-batch hooks or training hooks (which may create variables in their first step, which
    # a graph loop cannot); under a tf.distribute strategy Keras fit splits each batch across the replicas.
    # Epoch-level callbacks (tfmot's UpdatePruningStep: its wrappers count their pruning step inside the
    # training step) run in both. Both paths train on the same batches (pass_order) with the same train_step.
    per_step = any(map(runs_between_steps, callbacks)) or bool(model.hooks) or tf.distribute.has_strategy()
    model.compile(optimizer=optimizer)
    checkpoint = EpochCheckpoint(work_dir / "checkpoints", config.patience, every_s=checkpoint_every_s)
    checkpoint.set_model(model)
    # Build optimiser slots before a restore so they are matched, not deferred.
    if isinstance(model.optimizer, keras.optimizers.legacy.Optimizer):  # TF Privacy's DP optimisers are legacy
        model.optimizer._create_all_weights(net.trainable_variables)
    else:
        model.optimizer.build(net.trainable_variables)
    initial_epoch = checkpoint.resume()
    if initial_epoch:
        logging.info("resuming training from the epoch-%d checkpoint in %s", initial_epoch, checkpoint.directory)
    history = {}
    if initial_epoch < config.epochs and checkpoint.wait < config.patience:
        tensorboard = EpochSummaries(work_dir / "tensorboard", flush_s=checkpoint_every_s)
        dev_batch_size = max(config.batch_size, 512)
        if per_step:
            train_data = epoch_stream(*train, config.batch_size, seed, start_batch=initial_epoch * steps)
            fit = model.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch, verbose=verbose,
                            steps_per_epoch=steps,
                            callbacks=[DevEvaluation(dev, dev_batch_size), checkpoint, tensorboard, *callbacks,
                                       ProgressCallback()])
            history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
        else:
            history = _fit_compiled(model, train, dev, config, seed, initial_epoch, dev_batch_size,
                                    [checkpoint, tensorboard, *callbacks, ProgressCallback()], verbose)
    if checkpoint.diverged_at is not None and checkpoint.best_epoch < 0:
        raise TrainingError(f"training loss became NaN/inf in epoch {checkpoint.diverged_at + 1} before any epoch "
                            "completed, so there is no good checkpoint: lower the learning rate or check the data")
    if checkpoint.diverged_at is not None:
        checkpoint.restore_best()
        raise TrainingError(f"training loss became NaN/inf in epoch {checkpoint.diverged_at + 1}; the last good "
                            f"checkpoint is kept in {checkpoint.directory}: lower the learning rate or check the data")
    if checkpoint.best_epoch < 0:
        raise TrainingError("training finished without a single evaluated epoch; check epochs and the dev split")
    checkpoint.restore_best()
    model.apply_masks()
    epochs_run = len(history.get("loss", []))
    return FitResult(checkpoint.best_epoch, checkpoint.best, epochs_run, history,
                     epochs_completed=initial_epoch + epochs_run)


def evaluate_accuracy(net: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Accuracy of `net` on (x, y), forward passes in batches of `batch_size` as Keras `predict` runs them, but
    through one traced function kept on the net: `predict` set up its loop and data adapter on every call
    (~0.07 CPU-s, more than a small model's forward pass; each stage evaluates three splits per model).
    256, not 1024: a batch's activations (103 MB per 28x28x32 layer at 1024) stay reserved by TensorFlow's CPU
    allocator for the rest of the process; per-sample logits, hence the accuracy, do not depend on the batch."""
    forward = net.__dict__.get("_tfprune_forward")
    if forward is None:
        forward = tf.function(lambda batch: net(batch, training=False), reduce_retracing=True)
        net.__dict__["_tfprune_forward"] = forward
    logits = [forward(tf.constant(x[start:start + batch_size])).numpy() for start in range(0, len(x), batch_size)]
    return float(np.mean(np.argmax(np.concatenate(logits), axis=1) == y)) if logits else float("nan")
