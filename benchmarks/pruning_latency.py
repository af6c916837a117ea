"""CPU inference latency and throughput of dense vs pruned (exported) models, for every pruner.

Weights are random (Xavier init, random BN statistics): latency depends only on the exported shapes, not on what
the weights learned, so no training is needed. Unstructured pruners (l1_unstructured, admm) use their magnitude
masks directly (ADMM's phase only changes *which* weights go, not how many), and their exported model keeps the
dense shape: their honest gain is the compressed size, reported as gzip ratio. Structured pruners (l1_filter,
l2_filter, slimming one-shot) export a physically smaller model.

    python benchmarks/pruning_latency.py --quick
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.models import build_model
from tfprune_mia.pruning import PruneConfig, SlimmingOptions, make_pruner
from tfprune_mia.pruning.export import footprint
from tfprune_mia.pruning.masks import apply_pairs, magnitude_threshold_mask, make_pairs, prunable_kernels

MODELS = {"small_cnn": (28, 28, 1), "resnet18": (32, 32, 3)}
PRUNERS = ("l1_unstructured", "admm", "l1_filter", "l2_filter", "slimming")


def randomise(net, seed=0):
    rng = np.random.RandomState(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.1, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return net


def pruned_model(name, pruner, sparsity):
    set_seed(0)
    net = randomise(build_model(name, MODELS[name], 10))
    if pruner in ("l1_unstructured", "admm"):
        kernels = prunable_kernels(net)
        apply_pairs(make_pairs(kernels, [magnitude_threshold_mask(k.numpy(), sparsity) for k in kernels]))
        return net
    options = SlimmingOptions(mode="one_shot") if pruner == "slimming" else None
    p = make_pruner(PruneConfig(pruner, sparsity, options))
    return p.finalize(p.prepare(net, 1, 1))


def time_model(net, shape, batch, repeats):
    call = tf.function(lambda x: net(x, training=False))
    x = tf.constant(np.random.RandomState(0).rand(batch, *shape).astype(np.float32))
    call(x)
    call(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(x).numpy()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (shared CPU)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--sparsities", default="0.5,0.7,0.9")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    rows = []
    print(f"{'model':10} {'pruner':16} {'sparsity':>8} {'params':>10} {'MFLOPs':>9} {'gzip KB':>8} "
          f"{'b1 ms':>7} {f'b{args.batch} ms':>8} {'img/s':>8} {'speedup':>7} {'gzip x':>6}")
    for name in args.models.split(","):
        shape = MODELS[name]
        dense = randomise(build_model(name, shape, 10))
        base = {"fp": footprint(dense), "b1": time_model(dense, shape, 1, repeats * 4),
                "bN": time_model(dense, shape, args.batch, repeats)}
        configs = [("dense", 0.0)] + [(p, float(s)) for p in args.pruners.split(",")
                                      for s in args.sparsities.split(",")]
        for pruner, sparsity in configs:
            if pruner == "dense":
                fp, b1, bn = base["fp"], base["b1"], base["bN"]
            else:
                net = pruned_model(name, pruner, sparsity)
                fp, b1, bn = footprint(net), time_model(net, shape, 1, repeats * 4), time_model(net, shape,
                                                                                                args.batch, repeats)
            row = {"model": name, "pruner": pruner, "sparsity": sparsity, **fp, "latency_b1_ms": 1e3 * b1,
                   f"latency_b{args.batch}_ms": 1e3 * bn, "throughput": args.batch / bn,
                   "speedup": base["bN"] / bn, "gzip_ratio": base["fp"]["h5_gzip_bytes"] / fp["h5_gzip_bytes"]}
            rows.append(row)
            print(f"{name:10} {pruner:16} {sparsity:8.1f} {fp['params']:10d} {fp['flops'] / 1e6:9.1f} "
                  f"{fp['h5_gzip_bytes'] / 1024:8.0f} {1e3 * b1:7.2f} {1e3 * bn:8.1f} {args.batch / bn:8.0f} "
                  f"{row['speedup']:7.2f} {row['gzip_ratio']:6.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
