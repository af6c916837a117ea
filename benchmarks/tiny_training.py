"""Per-epoch overhead of fit_classifier on a tiny model: ColumnFC on 400 digits samples (4 steps of 128),
dev set of 200, before (the training module of a baseline commit, loaded from git) vs now, in one process.

  python benchmarks/tiny_training.py                    # baseline d33c2e8, 40 epochs
  python benchmarks/tiny_training.py --baseline=HEAD~3 --epochs=60

Epoch cost is the median CPU time (and wall time) between consecutive epoch ends inside one fit_classifier
call (the first two epochs, which trace graphs, left out); the training steps' own cost is the median epoch
of a bare compiled loop over the same batches without dev pass, checkpoints or logs (and, for the breakdown,
the same loop with the dev pass). Overhead is (epoch - steps) / epoch. One intra-op and one inter-op thread;
checkpoints go to a temporary directory (with the fsyncs the library does). Total CPU per fit (tracing and
set-up included) is printed too.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from baseline import load_module_at

flags.DEFINE_string("baseline", "d33c2e8", "Commit whose tfprune_mia/training.py is the 'before' code.")
flags.DEFINE_integer("epochs", 40, "Epochs per fit (patience larger, so every epoch runs).")
flags.DEFINE_integer("train", 400, "Training samples.")
flags.DEFINE_integer("dev", 200, "Dev samples.")
flags.DEFINE_string("model", "columnfc", "Architecture.")
FLAGS = flags.FLAGS

def load_baseline(commit: str, directory: Path):
    return load_module_at(commit, "tfprune_mia/training.py", directory, "baseline_training")


def time_fit(module, train, dev, input_shape, num_classes, work_dir):
    from tfprune_mia.backend import set_seed
    from tfprune_mia.models import build_model

    marks = []
    original = module.EpochCheckpoint.on_epoch_end

    def timed(self, epoch, logs=None):
        original(self, epoch, logs)
        marks.append((time.process_time(), time.perf_counter()))

    module.EpochCheckpoint.on_epoch_end = timed
    try:
        set_seed(0)
        net = build_model(FLAGS.model, input_shape, num_classes)
        config = module.TrainConfig(epochs=FLAGS.epochs, patience=FLAGS.epochs + 1)
        started = time.process_time()
        module.fit_classifier(net, train, dev, config, work_dir, seed=0)
        total = time.process_time() - started
    finally:
        module.EpochCheckpoint.on_epoch_end = original
    steps = np.diff(np.array(marks[1:]), axis=0)
    return float(np.median(steps[:, 0])), float(np.median(steps[:, 1])), total


def time_steps(train, input_shape, num_classes, dev=None):
    from tfprune_mia import training
    from tfprune_mia.backend import keras, set_seed
    from tfprune_mia.models import build_model

    set_seed(0)
    net = build_model(FLAGS.model, input_shape, num_classes)
    trainer = training.TrainingModel(net, 5e-4)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8))
    loop = training.CompiledEpochs(trainer, train, 128, seed=0, dev=dev)
    costs = []
    for epoch in range(FLAGS.epochs):
        started = time.process_time(), time.perf_counter()
        loop.run_epoch(epoch)
        costs.append((time.process_time() - started[0], time.perf_counter() - started[1]))
    costs = np.array(costs[2:])
    return float(np.median(costs[:, 0])), float(np.median(costs[:, 1]))


def main(argv):
    del argv
    from tfprune_mia.backend import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfprune_mia import training
    from tfprune_mia.data import load_dataset

    data = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(data))
    train_index, dev_index = order[:FLAGS.train], order[FLAGS.train:FLAGS.train + FLAGS.dev]
    train = (data.x[train_index], data.y[train_index])
    dev = (data.x[dev_index], data.y[dev_index])
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = load_baseline(FLAGS.baseline, tmp)
        steps_cpu, steps_wall = time_steps(train, data.input_shape, data.num_classes)
        print(f"{FLAGS.model}, {FLAGS.train} samples, batch 128: training steps alone {1000 * steps_cpu:.2f} "
              f"CPU-ms ({1000 * steps_wall:.2f} ms wall) per epoch")
        dev_cpu, dev_wall = time_steps(train, data.input_shape, data.num_classes, dev=dev)
        print(f"  with the dev pass in the same call: {1000 * dev_cpu:.2f} CPU-ms ({1000 * dev_wall:.2f} ms wall)")
        print(f"{'code':22s} {'CPU-ms/epoch':>13s} {'wall-ms/epoch':>14s} {'overhead(CPU)':>14s} "
              f"{'overhead(wall)':>15s} {'CPU-s/fit':>10s}")
        for label, module in ((f"before ({FLAGS.baseline})", baseline), ("now", training)):
            cpu, wall, total = time_fit(module, train, dev, data.input_shape, data.num_classes,
                                        tmp / label.split()[0])
            print(f"{label:22s} {1000 * cpu:13.2f} {1000 * wall:14.2f} {100 * (1 - steps_cpu / cpu):13.0f}% "
                  f"{100 * (1 - steps_wall / wall):14.0f}% {total:10.2f}", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(app.run(main))
