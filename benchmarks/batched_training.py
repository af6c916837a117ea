"""Models trained per minute: K small classifiers one by one (fit_classifier, now and at a baseline commit)
vs all at once (training_batched.fit_classifiers), in one process.

  python benchmarks/batched_training.py                              # K=8, small_cnn and columnfc
  python benchmarks/batched_training.py --models=columnfc --k=16 --epochs=30
  python benchmarks/batched_training.py --dataset=fashion_mnist --models=small_cnn   # 28x28 inputs

Digits (8x8) or Fashion-MNIST (28x28), each model on its own random --train/--dev split with its own seed,
TrainConfig defaults (Adam 1e-3, batch 128, early stopping patience 6) but --epochs. Everything a caller pays
is timed: model building, tracing, training, checkpoints, and for the batched ways extracting the K ordinary
models. The batched way is timed as it is now and at --batched_baseline. One intra-op and one inter-op
thread; CPU-seconds (time.process_time) and wall seconds.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from baseline import load_module_at

flags.DEFINE_integer("k", 8, "Models per architecture.")
flags.DEFINE_integer("epochs", 20, "Maximum epochs per model.")
flags.DEFINE_list("models", ["small_cnn", "columnfc"], "Architectures.")
flags.DEFINE_string("baseline", "d33c2e8", "Commit whose fit_classifier is timed too ('' to skip).")
flags.DEFINE_string("batched_baseline", "373e3fc",
                    "Commit whose training_batched.fit_classifiers is timed too ('' to skip).")
flags.DEFINE_enum("dataset", "digits", ["digits", "fashion_mnist"], "Records the models train on.")
flags.DEFINE_integer("train", 400, "Training records per model.")
flags.DEFINE_integer("dev", 200, "Dev records per model.")
FLAGS = flags.FLAGS


def make_jobs(data, count):
    from tfprune_mia.training_batched import ModelJob

    rng = np.random.default_rng(0)
    jobs = []
    for k in range(count):
        order = rng.permutation(len(data))
        train, dev = order[:FLAGS.train], order[FLAGS.train:FLAGS.train + FLAGS.dev]
        jobs.append(ModelJob((data.x[train], data.y[train]), (data.x[dev], data.y[dev]), seed=100 + k))
    return jobs


def one_by_one(training, architecture, data, jobs, work_dir):
    from tfprune_mia.backend import set_seed
    from tfprune_mia.models import build_model

    accuracies = []
    for k, job in enumerate(jobs):
        set_seed(job.seed)
        net = build_model(architecture, data.input_shape, data.num_classes)
        fit = training.fit_classifier(net, job.train, job.dev, training.TrainConfig(epochs=FLAGS.epochs),
                                      work_dir / str(k), seed=job.seed)
        accuracies.append(fit.best_dev_accuracy)
    return accuracies


def batched(module, architecture, data, jobs, work_dir, epochs=None):
    from tfprune_mia.training import TrainConfig

    results = module.fit_classifiers(architecture, data.input_shape, data.num_classes, jobs,
                                     TrainConfig(epochs=epochs or FLAGS.epochs), work_dir)
    runs = [fit.epochs_run for _, fit in results]
    if epochs:  # a warm-up
        return []
    # The stack steps every model until the last one stops early: the model-epochs spent after a stop.
    print(f"  epochs run per model {runs}: {1 - sum(runs) / (len(runs) * max(runs)):.0%} of the stack's "
          "model-epochs went to models that had already stopped")
    return [fit.best_dev_accuracy for _, fit in results]


def timed(function, *args):
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def main(argv):
    del argv
    from tfprune_mia.backend import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfprune_mia import training, training_batched
    from tfprune_mia.data import load_dataset

    data = load_dataset(FLAGS.dataset)
    jobs = make_jobs(data, FLAGS.k)
    print(f"load average at start: {os.getloadavg()}")
    print(f"K={FLAGS.k}, {FLAGS.dataset} {'x'.join(map(str, data.input_shape))} {FLAGS.train}/{FLAGS.dev}, "
          f"up to {FLAGS.epochs} epochs, patience 6")
    print(f"{'model':10s} {'way':28s} {'CPU-s':>7s} {'wall-s':>7s} {'models/CPU-min':>15s} {'mean dev acc':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ways = [("one by one (now)", lambda a, d: one_by_one(training, a, data, jobs, d))]
        batched_modules = [training_batched]
        if FLAGS.baseline:
            old = load_module_at(FLAGS.baseline, "tfprune_mia/training.py", tmp, "baseline_training")
            ways.append((f"one by one ({FLAGS.baseline})", lambda a, d: one_by_one(old, a, data, jobs, d)))
        if FLAGS.batched_baseline:
            old_batched = load_module_at(FLAGS.batched_baseline, "tfprune_mia/training_batched.py", tmp,
                                         "baseline_training_batched")
            ways.append((f"batched ({FLAGS.batched_baseline})",
                         lambda a, d: batched(old_batched, a, data, jobs, d)))
            batched_modules.append(old_batched)
        ways.append(("batched (now)", lambda a, d: batched(training_batched, a, data, jobs, d)))
        for architecture in FLAGS.models:
            # Untimed warm-up of every way: the first Keras model and graph of a process, and the first use of
            # a module's layers and functions, pay one-off library set-up.
            one_by_one(training, architecture, data, jobs[:1], tmp / f"{architecture}-warmup")
            for index, module in enumerate(batched_modules):
                batched(module, architecture, data, jobs[:2], tmp / f"{architecture}-warmup-{index}", epochs=1)
            cpu_by_way = {}
            for label, way in ways:
                work_dir = tmp / f"{architecture}-{len(cpu_by_way)}"
                accuracies, cpu, wall = timed(way, architecture, work_dir)
                cpu_by_way[label] = cpu
                print(f"{architecture:10s} {label:28s} {cpu:7.1f} {wall:7.1f} {60 * FLAGS.k / cpu:15.1f} "
                      f"{np.mean(accuracies):13.3f}", flush=True)
            base, now = cpu_by_way["one by one (now)"], cpu_by_way["batched (now)"]
            print(f"{architecture:10s} batched (now) speed-up vs one by one (now): {base / now:.2f}x"
                  + "".join(f", vs {label}: {cpu / now:.2f}x" for label, cpu in cpu_by_way.items()
                            if label not in ("one by one (now)", "batched (now)")))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
