"""Epoch-end machinery of classifier training (training.fit_classifier): the compiled dev pass and the Keras
callbacks that add its metrics to the logs, write TensorBoard summaries, and checkpoint, early-stop and restore
the best weights crash-safely."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from tfprune_mia import faults, fs
from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import CheckpointError, TrainingError
from tfprune_mia.io import atomic_path, write_json


def dev_metrics(model: keras.Model, x: tf.Tensor, y: tf.Tensor, batch_size: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """(loss, accuracy) of a TrainingModel's net on a dev set held as tensors, for use inside a tf.function: the
    loss an unweighted mean of batch means (as Keras' validation loss), the accuracy over all samples."""
    size = tf.shape(y)[0]
    loss_sum, correct, batches = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
    for start in tf.range(0, size, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model.net(xb, training=False)
        loss_sum += tf.cast(model.batch_loss(yb, logits), tf.float32)
        batches += 1.0
        predicted = tf.argmax(logits, axis=-1, output_type=yb.dtype)
        correct += tf.reduce_sum(tf.cast(tf.equal(predicted, yb), tf.float32))
    return loss_sum / batches, correct / tf.cast(size, tf.float32)


class DevEvaluation(keras.callbacks.Callback):
    """Adds val_loss / val_accuracy of the dev set to each epoch's logs, for the callbacks after it.

    Keras' own validation pass (`validation_data=`) sets up an evaluation loop with its own callbacks and
    iterator every epoch; on a 400-sample epoch that costs more than the epoch's training. Here the dev set is
    one resident tensor and the pass is one compiled call. Must come before the callbacks that read val_*.
    """

    def __init__(self, dev: Tuple[np.ndarray, np.ndarray], batch_size: int):
        super().__init__()
        self.x, self.y = tf.constant(dev[0]), tf.constant(dev[1])
        self.batch_size = int(batch_size)
        self._evaluate = tf.function(self._run)

    def _run(self):
        return dev_metrics(self.model, self.x, self.y, self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        loss, accuracy = self._evaluate()
        logs["val_loss"], logs["val_accuracy"] = float(loss), float(accuracy)


class EpochSummaries(keras.callbacks.Callback):
    """Each epoch's logs as TensorBoard scalars, laid out as Keras' TensorBoard callback does it (runs `train`
    and `validation`, tags `epoch_<metric>`), without its per-epoch cost.

    Keras writes every scalar through an eager summary op; on a 400-sample epoch those cost more than the
    training steps. Here the events are protocol buffers queued to TensorBoard's own event-file writer, which
    writes them out in batches (every `flush_s` seconds and when training ends); a crash loses at most the
    scalars queued since the last write, never a checkpoint.
    """

    def __init__(self, log_dir: Path, flush_s: float = 30.0):
        super().__init__()
        self.log_dir = fs.path(log_dir)
        self.flush_s = flush_s
        self._writers = {}

    def _writer(self, run: str):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if run not in self._writers:
            self._writers[run] = EventFileWriter(str(self.log_dir / run), max_queue_size=1000,
                                                 flush_secs=self.flush_s)
        return self._writers[run]

    def write(self, run: str, step: int, scalars: dict) -> None:
        """Queue one event of `scalars` ({tag: value}) at `step` to the run's event file."""
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = [summary_pb2.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()]
        self._writer(run).add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                                    summary=summary_pb2.Summary(value=values)))

    def on_epoch_end(self, epoch, logs=None):
        runs = {}
        for name, value in (logs or {}).items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            runs.setdefault(run, {})[f"epoch_{tag}"] = value
        for run, scalars in runs.items():
            self.write(run, epoch, scalars)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class EpochCheckpoint(keras.callbacks.Callback):
    """Early stopping on strict dev-accuracy improvement, best-weights restore and resumable checkpoints.

    The training state (weights, optimiser slots, the best weights so far, epoch, best, wait) goes into one
    TF checkpoint, written after the first epoch, then whenever `every_s` seconds have passed since the last
    one, and after the epoch that ends training. A killed run resumes from the last checkpoint and, since
    the batch order is a function of (seed, step) (`epoch_stream`), ends exactly as an uninterrupted run;
    it only repeats the epochs since that checkpoint. Writing every epoch instead cost more than a tiny
    model's epoch itself. The best weights are kept in variables beside the net (an in-graph copy on each
    improvement) and written to `best_weights.h5` when training ends. A non-finite loss stops training.
    """

    def __init__(self, directory: Path, patience: int, monitor: str = "val_accuracy", every_s: float = 30.0):
        super().__init__()
        self.directory = fs.path(directory)
        self.patience = patience
        self.monitor = monitor
        self.every_s = float(every_s)
        self.best = -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.diverged_at: Optional[int] = None
        self._manager: Optional[tf.train.CheckpointManager] = None
        self._best_weights: Optional[tf.Module] = None
        self._best_values: Optional[List[np.ndarray]] = None
        self._last_save: Optional[float] = None

    @property
    def best_path(self) -> Path:
        return self.directory / "best_weights.h5"

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def _best(self) -> tf.Module:
        if self._best_weights is None:
            self._best_weights = tf.Module(name="best_weights")
            self._best_weights.values = [tf.Variable(w, trainable=False) for w in self.model.net.weights]
        return self._best_weights

    def _copy_to_best(self) -> None:
        # A host copy (one read per variable); the checkpoint variables are only filled when a checkpoint is
        # written, since on a tiny model an assign per variable per improvement is a visible part of the epoch.
        self._best_values = self.model.net.get_weights()

    def _best_to_variables(self) -> None:
        if self._best_values is not None:
            for best, value in zip(self._best().values, self._best_values):
                best.assign(value)

    def _checkpoint_manager(self) -> tf.train.CheckpointManager:
        if self._manager is None:
            checkpoint = tf.train.Checkpoint(net=self.model.net, optimizer=self.model.optimizer,
                                             best_weights=self._best())
            self._manager = tf.train.CheckpointManager(checkpoint, str(self.directory / "last"),
                                                        # 2: state.json still names the previous checkpoint
                                                        # until it is rewritten after the new one is saved.
                                                        max_to_keep=2)
        return self._manager

    def resume(self) -> int:
        """Restore the last checkpoint if there is one; return the epoch to start from."""
        if not self.state_path.exists():
            return 0
        try:
            state = json.loads(self.state_path.read_text())
            # Relative to this directory, so a copied or moved run directory restores its own checkpoint.
            path = self.directory / state["checkpoint"]
            self._checkpoint_manager().checkpoint.restore(str(path)).expect_partial()
            if state.get("best_in_checkpoint"):
                self._best_values = [best.numpy() for best in self._best().values]
            else:
                self._load_best_from_h5()  # a checkpoint written before the best weights moved into it
        except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise CheckpointError(f"training checkpoint in {self.directory} is missing or corrupt ({reason}); "
                                  "delete that directory to retrain from scratch") from None
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        return int(state["epoch"]) + 1

    def _load_best_from_h5(self) -> None:
        current = self.model.net.get_weights()
        self.model.net.load_weights(str(self.best_path))
        self._copy_to_best()
        self.model.net.set_weights(current)
        self._best_to_variables()

    def _save(self, epoch: int) -> None:
        self._best_to_variables()
        path = self._checkpoint_manager().save(checkpoint_number=epoch)
        faults.point("train.checkpoint")
        write_json(self.state_path, {"epoch": epoch, "best": self.best, "best_epoch": self.best_epoch,
                                     "wait": self.wait, "checkpoint": os.path.relpath(path, str(self.directory)),
                                     "best_in_checkpoint": True})
        self._last_save = time.monotonic()
        faults.point("train.epoch")

    def on_epoch_end(self, epoch, logs=None):
        # The epoch's loss is a running mean, so one non-finite batch makes it non-finite: checking here
        # instead of after every batch avoids a device sync per step (measured ~2x slower on tiny models).
        loss = (logs or {}).get("loss")
        if faults.point("train.loss"):
            loss = float("nan")
        if loss is not None and not np.isfinite(loss):
            self.diverged_at = epoch
            self.model.stop_training = True
            return
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise TrainingError(f"no {self.monitor} in the training logs; pass validation data")
        if current > self.best:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self._copy_to_best()
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True
        last_epoch = epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training
        if last_epoch or self._last_save is None or time.monotonic() - self._last_save >= self.every_s:
            self._save(epoch)

    def restore_best(self) -> None:
        """Load the best weights into the net and keep them in best_weights.h5."""
        if self.best_epoch < 0:
            return
        self.model.net.set_weights(self._best_values)
        with atomic_path(self.best_path) as tmp:
            self.model.net.save_weights(str(tmp))
