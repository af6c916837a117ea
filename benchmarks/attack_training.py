"""Attack-model training cost per epoch: the Keras `fit` loop the attacks used before (with Keras' own
layers in SAMIA's encoder and Keras' dropout generator) vs what they use now -- the compiled whole-epoch loop
(training.CompiledEpochs), SAMIA's fused encoder layer (samia.PostNormEncoderLayer.call: one Q/K/V matmul,
layer norm and GELU with hand-written gradients) and the stateless per-step 8-bit dropout masks
(neural.step_dropout) -- at the identical recipe (neural.py: batch 128, PyTorch-form SGD momentum, step LR
schedule, coupled weight decay, dropout 0.2, final-epoch model).

  python benchmarks/attack_training.py                      # 9,000 samples, 10 classes (the issue's setting)
  python benchmarks/attack_training.py --samples=2000 --epochs=2

Both paths run in this one process at one intra-op and one inter-op thread, timed in CPU-seconds
(time.process_time), so a loaded shared machine changes both the same way. Per-epoch cost is the median
of epochs 2..1+E of one training, which leaves graph tracing and model building out.
Achieved GFLOP/s count the matmul-class FLOPs of one sample's forward pass, times 3 for a training step
(forward + backward), against the peak of a 1024x1024 float32 matmul timed in this run.
"""
from __future__ import annotations

import contextlib
import os
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer("samples", 9000, "Shadow member/non-member samples the attack model trains on.")
flags.DEFINE_integer("classes", 10, "Classes of the victim (SAMIA has one token per class).")
flags.DEFINE_integer("epochs", 5, "Timed epochs per path (after one untimed setup epoch); the median counts.")
flags.DEFINE_list("attacks", ["samia", "nn"], "Neural attacks to time.")
flags.DEFINE_bool("breakdown", True, "Also time the compiled loop with dropout off, to show what the dropout "
                  "masks' random numbers cost (the recipe keeps dropout; this is only a measurement).")
FLAGS = flags.FLAGS


def keras_fit_path(model, features, is_member, context):
    """The attack training as it was before the compiled loop: Keras fit over a shuffling tf.data pipeline,
    with the momentum update written out op by op (as TorchSGD did before it used the fused kernel), Keras'
    dropout generator and (with samia.keras_reference_layers) Keras' own layers in SAMIA's encoder."""
    from tfprune_mia.attacks.neural import MOMENTUM, WEIGHT_DECAY, TorchSGD, step_schedule
    from tfprune_mia.backend import tf
    from tfprune_mia.batch_order import make_dataset
    from tfprune_mia.training import TrainingModel

    class UnfusedTorchSGD(TorchSGD):
        def update_step(self, gradient, variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            momentum = tf.cast(self.momentum, variable.dtype)
            velocity = self.momentums[self._index_dict[self._var_key(variable)]]
            velocity.assign(momentum * velocity + tf.convert_to_tensor(gradient))
            variable.assign_sub(lr * velocity)

    steps_per_epoch = int(np.ceil(len(is_member) / context.batch_size))
    trainer = TrainingModel(model, weight_decay=WEIGHT_DECAY)
    trainer.compile(optimizer=UnfusedTorchSGD(step_schedule(context.epochs, steps_per_epoch), momentum=MOMENTUM))
    trainer.fit(make_dataset(features.astype(np.float32), is_member.astype(np.int64), context.batch_size,
                             shuffle_seed=context.seed),
                epochs=context.epochs, verbose=0)
    return model


def compiled_path(model, features, is_member, context):
    from tfprune_mia.attacks.neural import train_attack_model

    return train_attack_model(model, features, is_member, context)


def compiled_keras_layers_path(model, features, is_member, context):
    """The compiled loop with Keras' own dropout generator (and, with keras_reference_layers, Keras' layers in
    SAMIA's encoder): what the layer-level changes (the fused encoder layer, StepDropoutMasks) add on top."""
    from tfprune_mia.attacks import neural

    step_dropout = neural.step_dropout
    neural.step_dropout = lambda *args, **kwargs: contextlib.nullcontext()
    try:
        return neural.train_attack_model(model, features, is_member, context)
    finally:
        neural.step_dropout = step_dropout


def forward_flops_per_sample(model, num_features):
    """Multiply-add FLOPs (2 per MAC) of the matmul-class ops of one sample's forward pass: MatMul,
    BatchMatMul and Einsum (TensorFlow's own profiler does not count Einsum, which MultiHeadAttention uses)."""
    from tfprune_mia.backend import tf

    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, num_features), tf.float32)).graph
    total = 0

    def count(op):
        if op.type == "MatMul":
            a, b = (t.shape.as_list() for t in op.inputs)
            m, k = a[::-1] if op.get_attr("transpose_a") else a
            n = b[0] if op.get_attr("transpose_b") else b[1]
            return 2 * m * k * n
        if op.type in ("BatchMatMulV2", "BatchMatMulV3"):
            a, b = (t.shape.as_list() for t in op.inputs)
            m, k = (a[-1], a[-2]) if op.get_attr("adj_x") else (a[-2], a[-1])
            n = b[-2] if op.get_attr("adj_y") else b[-1]
            return 2 * int(np.prod(a[:-2])) * m * k * n
        if op.type == "Einsum":
            sizes = {}
            inputs, _ = op.get_attr("equation").decode().split("->")
            for letters, tensor in zip(inputs.split(","), op.inputs):
                sizes.update(zip(letters, tensor.shape.as_list()))
            return 2 * int(np.prod(list(sizes.values())))
        return 0

    for function in [graph, *graph._functions.values()]:
        for op in (function.get_operations() if function is graph else function.graph.get_operations()):
            total += count(op)
    return total


def matmul_peak_gflops(size=1024, repeats=20):
    from tfprune_mia.backend import tf

    a = tf.random.normal((size, size))

    @tf.function
    def chain(n):
        out = a
        for _ in tf.range(n):
            out = tf.matmul(out, a) * 1e-3
        return out

    chain(tf.constant(1))
    started = time.process_time()
    chain(tf.constant(repeats)).numpy()
    return repeats * 2 * size ** 3 / (time.process_time() - started) / 1e9


def without_dropout(model):
    """The same architecture with every dropout rate 0 (MultiHeadAttention's included)."""
    from tfprune_mia.attacks.samia import build_samia
    from tfprune_mia.attacks.neural import build_miafc

    if model.name == "samia":
        return build_samia(FLAGS.classes, num_chunks=model.input_shape[-1] // FLAGS.classes, dropout=0.0)
    return build_miafc(model.input_shape[-1], dropout=0.0)


@contextlib.contextmanager
def epoch_clock(costs):
    """Append each epoch's CPU-s to `costs`, for both paths: Keras fit through a callback that every fit
    gets, the compiled loop by timing CompiledEpochs.run_epoch."""
    from tfprune_mia.backend import keras
    from tfprune_mia.training import CompiledEpochs

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            costs.append(time.process_time() - self.started)

    run_epoch, fit = CompiledEpochs.run_epoch, keras.Model.fit

    def timed_run_epoch(self, epoch):
        started = time.process_time()
        logs = run_epoch(self, epoch)
        costs.append(time.process_time() - started)
        return logs

    CompiledEpochs.run_epoch = timed_run_epoch
    keras.Model.fit = lambda self, *args, **kwargs: fit(self, *args, callbacks=[Clock()], **kwargs)
    try:
        yield
    finally:
        CompiledEpochs.run_epoch, keras.Model.fit = run_epoch, fit


def per_epoch_cpu_s(path, attack_name, features, is_member, transform=None, keras_layers=False):
    """Median CPU-s of epochs 2..1+E of one training: the first epoch carries graph tracing and model setup."""
    from tfprune_mia.attacks import AttackContext, make_attack
    from tfprune_mia.attacks.samia import keras_reference_layers
    from tfprune_mia.backend import set_seed

    costs = []
    with keras_reference_layers() if keras_layers else contextlib.nullcontext(), epoch_clock(costs):
        set_seed(0)
        model = make_attack(attack_name).build(features.shape[1], FLAGS.classes)
        if transform is not None:
            model = transform(model)
        path(model, features, is_member, AttackContext(seed=0, epochs=1 + FLAGS.epochs))
    assert len(costs) == 1 + FLAGS.epochs, costs
    return float(np.median(costs[1:])), model


def main(argv):
    del argv
    from tfprune_mia.backend import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfprune_mia.attacks import Signals, make_attack

    rng = np.random.default_rng(0)
    posteriors = rng.dirichlet(np.ones(FLAGS.classes), FLAGS.samples).astype(np.float32)
    signals = Signals(posteriors, rng.random(posteriors.shape).astype(np.float32),
                      rng.integers(0, FLAGS.classes, FLAGS.samples))
    is_member = rng.integers(0, 2, FLAGS.samples)
    peak = matmul_peak_gflops()
    print(f"load average at start: {os.getloadavg()}")
    print(f"matmul peak (1024^3 float32, 1 thread): {peak:.1f} GFLOP/s")
    print(f"{'attack':8s} {'path':10s} {'CPU-s/epoch':>12s} {'GFLOP/s':>8s} {'% peak':>7s}")
    print("(keras_fit: before; loop_only: compiled loop with Keras' layers and dropout; compiled: now)")
    for name in FLAGS.attacks:
        features = make_attack(name).features(signals)
        results = {}
        for label, path in (("keras_fit", keras_fit_path), ("loop_only", compiled_keras_layers_path),
                            ("compiled", compiled_path)):
            cost, model = per_epoch_cpu_s(path, name, features, is_member, keras_layers=label != "compiled")
            flops = 3 * forward_flops_per_sample(model, features.shape[1]) * FLAGS.samples
            results[label] = cost
            gflops = flops / cost / 1e9
            print(f"{name:8s} {label:10s} {cost:12.3f} {gflops:8.2f} {100 * gflops / peak:6.1f}%", flush=True)
        print(f"{name:8s} speed-up per epoch: {results['keras_fit'] / results['compiled']:.2f}x "
              f"(compiled loop alone, Keras' layers: {results['keras_fit'] / results['loop_only']:.2f}x) "
              f"(the matmul peak bounds it at {peak / (flops / results['keras_fit'] / 1e9):.2f}x)")
        floor = flops / peak / 1e9
        print(f"{name:8s} its matmul-class FLOPs at the peak take {floor:.3f} CPU-s: "
              f"{100 * floor / results['compiled']:.0f}% of the compiled epoch, the rest is everything else")
        if FLAGS.breakdown and name in ("samia", "nn"):
            cost, _ = per_epoch_cpu_s(compiled_path, name, features, is_member, transform=without_dropout)
            print(f"{name:8s} compiled, dropout off: {cost:.3f} CPU-s/epoch -> dropout's random masks are "
                  f"{100 * (1 - cost / results['compiled']):.0f}% of the compiled epoch")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
