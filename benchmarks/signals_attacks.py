"""Speed of the attack stage: signals (posteriors + 10-perturbation sensitivity) in samples/s, and attack
training time, for a small CNN and a ResNet-18-sized victim on CIFAR-shaped inputs.

  python benchmarks/signals_attacks.py                       # quick: few samples, few epochs
  python benchmarks/signals_attacks.py --samples=2048 --attack_samples=8192 --epochs=5

Models are randomly initialised (the speed of a forward pass does not depend on training), inputs are
Gaussian noise; figures are wall-clock on whatever machine runs it (the first call, which traces the graph,
is timed separately as warm-up).
"""
from __future__ import annotations

import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer("samples", 256, "Samples to compute signals for, per model.")
flags.DEFINE_integer("batch_size", 128, "Signal batch size (x10 perturbations in one tiled batch).")
flags.DEFINE_integer("attack_samples", 2048, "Shadow member/non-member samples the attacks train on.")
flags.DEFINE_integer("epochs", 2, "Attack-model training epochs (paper: 100; time scales linearly).")
flags.DEFINE_list("models", ["small_cnn", "resnet18"], "Victim architectures.")
flags.DEFINE_list("attacks", ["samia", "nn", "conf", "lira_offline"], "Attacks to time.")
FLAGS = flags.FLAGS


def time_signals(name, num_classes=10):
    from tfprune_mia.attacks import SignalConfig, compute_signals
    from tfprune_mia.models import build_model

    net = build_model(name, (32, 32, 3), num_classes)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(FLAGS.samples, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, FLAGS.samples)
    config = SignalConfig(batch_size=FLAGS.batch_size)
    started = time.perf_counter()
    compute_signals(net, x[:FLAGS.batch_size], y[:FLAGS.batch_size], config)  # trace once
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    compute_signals(net, x, y, config)
    full = time.perf_counter() - started
    started = time.perf_counter()
    compute_signals(net, x, y, config, with_sensitivity=False)
    cheap = time.perf_counter() - started
    return {"params": net.count_params(), "warmup_s": warmup, "signals_per_s": FLAGS.samples / full,
            "posteriors_only_per_s": FLAGS.samples / cheap}


def time_attacks(num_classes=10):
    from tfprune_mia.attacks import AttackContext, MembershipSet, ReferenceSignals, Signals, make_attack

    rng = np.random.default_rng(0)

    def signals(n):
        logits = rng.normal(size=(n, num_classes)).astype(np.float32)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return Signals(p, rng.random((n, num_classes)).astype(np.float32), rng.integers(0, num_classes, n), logits)

    n = FLAGS.attack_samples
    shadow = MembershipSet.from_parts(signals(n // 2), signals(n // 2))
    target = signals(n)
    reference = ReferenceSignals(tuple(signals(n) for _ in range(5)), np.zeros((5, n), bool), signals(256),
                                 tuple(signals(256) for _ in range(5)))
    result = {}
    for name in FLAGS.attacks:
        attack = make_attack(name, AttackContext(epochs=FLAGS.epochs))
        started = time.perf_counter()
        attack.run(shadow, target, reference)
        result[name] = time.perf_counter() - started
    return result


def main(argv):
    del argv
    from tfprune_mia.backend import tf

    print(f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU(s); random-init models")
    for name in FLAGS.models:
        r = time_signals(name)
        print(f"signals {name:10s} ({r['params'] / 1e6:.2f} M params): {r['signals_per_s']:8.1f} samples/s with "
              f"sensitivity (11 forward passes each), {r['posteriors_only_per_s']:8.1f} samples/s posteriors only; "
              f"first-call trace {r['warmup_s']:.1f} s")
    for name, seconds in time_attacks().items():
        print(f"attack {name:14s}: fit + score on {FLAGS.attack_samples} shadow / {FLAGS.attack_samples} target "
              f"samples, {FLAGS.epochs} epochs: {seconds:.2f} s")


if __name__ == "__main__":
    app.run(main)
