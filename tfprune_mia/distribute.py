"""tf.distribute strategies for training large victims: `--distribution=<name>` picks one by name.

    none          the default strategy (one device)
    mirrored      MirroredStrategy: synchronous data parallelism over the visible GPUs; on a machine without
                  GPUs over the logical CPU devices (one, unless `split_cpu` made more: for tests)
    multi_worker  MultiWorkerMirroredStrategy: the same across processes or machines, configured by the TF_CONFIG
                  environment variable (https://www.tensorflow.org/guide/distributed_training)

Build the net and call fit_classifier inside `scope(name)`; fit_classifier then trains through Keras fit, which
splits each global batch of `batch_size` across the replicas, and TrainingModel scales the loss and coupled
weight decay so the summed replica gradients are those of the global batch. Masks of pruned weights are applied
once for all replicas after every step. BatchNormalization normalises with each replica's share of the batch
(Keras' default, as PyTorch's DistributedDataParallel without SyncBatchNorm), so a BN net's numbers depend on
the replica count, beyond the reduction order of the summed gradients.

A strategy is built once per process (`strategy`): MultiWorkerMirroredStrategy configures TensorFlow's
collective ops, which is only possible before TensorFlow initialises its runtime, so binaries build it first.
Under multi_worker every worker runs the same program and only the chief writes: `worker_scratch_root` gives a
non-chief worker a temporary directory to write its copy of the run to, as TensorFlow's multi-worker guide does
for checkpoints.
"""
from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from typing import Callable, Dict, Optional

from tfprune_mia.backend import tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry

STRATEGIES: Registry[Callable[[], tf.distribute.Strategy]] = Registry("distribution")


@STRATEGIES.register("none")
def _default() -> tf.distribute.Strategy:
    return tf.distribute.get_strategy()


@STRATEGIES.register("mirrored")
def _mirrored() -> tf.distribute.Strategy:
    # MirroredStrategy() without devices takes the GPUs, or CPU:0 alone when there is none: on a CPU-only
    # machine it would ignore the logical CPU devices split_cpu made.
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    # Between CPU devices TF picks ring collectives, which under tfmot's pruning wrappers (a cross-replica mean
    # of the masked weights in every forward pass) failed with "Shape mismatch in the collective instance" in
    # TF 2.15; the devices share the host's memory, so reducing on one of them costs nothing extra.
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


@STRATEGIES.register("multi_worker")
def _multi_worker() -> tf.distribute.Strategy:
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"cannot start multi_worker ({reason}); build it at the start of the process, before "
                          "any TensorFlow work, with TF_CONFIG naming this worker") from None


_BUILT: Dict[str, tf.distribute.Strategy] = {}
_SCRATCH: Dict[str, str] = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """A new strategy of that name (ConfigError for an unknown one)."""
    return STRATEGIES.get(name)()


def strategy(name: str) -> tf.distribute.Strategy:
    """This process's strategy of that name, built on first use."""
    if name not in _BUILT:
        _BUILT[name] = make_strategy(name)
    return _BUILT[name]


def scope(name: str):
    """The context to build, load and train models under with distribution `name` (none: no context at all,
    so single-device training is exactly what it was without a strategy)."""
    return contextlib.nullcontext() if name == "none" else strategy(name).scope()


def is_chief(name: str) -> bool:
    """Whether this process writes the run's files: always, except on a non-chief multi_worker worker."""
    return name != "multi_worker" or strategy(name).extended.should_checkpoint


def worker_scratch_root(name: str) -> Optional[str]:
    """Where a non-chief worker writes its copy of the run (None on the chief and without multi_worker)."""
    if is_chief(name):
        return None
    if name not in _SCRATCH:
        resolver = strategy(name).cluster_resolver
        _SCRATCH[name] = tempfile.mkdtemp(prefix=f"tfprune-{resolver.task_type}{resolver.task_id}-")
        # Nothing reads a worker's copy once the run ends (TF's guide deletes its workers' checkpoints too).
        atexit.register(shutil.rmtree, _SCRATCH[name], ignore_errors=True)
    return _SCRATCH[name]


def execution_record(name: str, batch_size: int) -> Dict:
    """How a model was trained, for its stored meta: the strategy, replicas and each replica's share of the
    batch (the numbers depend on them, the cache key does not: see docs/distribution.md)."""
    built = tf.distribute.get_strategy() if name == "none" else strategy(name)
    replicas = built.num_replicas_in_sync
    resolver = getattr(built, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    workers = sum(len(cluster.get(task, [])) for task in ("chief", "worker"))
    return {"distribution": name, "replicas": replicas, "workers": max(workers, 1),
            "replica_batch_size": -(-batch_size // replicas)}


def split_cpu(num_devices: int) -> None:
    """Expose the CPU as `num_devices` logical devices (MirroredStrategy then has that many replicas): for
    CPU-only machines and for testing. Must run before TensorFlow first touches a device."""
    if num_devices < 1:
        raise ConfigError(f"num_devices={num_devices}: must be at least 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError:
        raise ConfigError("split_cpu must run before TensorFlow initialises its devices (first op or model); "
                          "call it at the start of the process") from None
