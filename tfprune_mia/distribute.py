"""tf.distribute strategies for training large victims: `--distribution=<name>` picks one by name.

    none          the default strategy (one device)
    mirrored      MirroredStrategy: synchronous data parallelism over the visible GPUs (or CPU devices)
    multi_worker  MultiWorkerMirroredStrategy: the same across machines, configured by the TF_CONFIG
                  environment variable (https://www.tensorflow.org/guide/distributed_training)

Build the net and call fit_classifier inside `with strategy.scope():`; fit_classifier then trains through
Keras fit, which splits each global batch of `batch_size` across the replicas, and TrainingModel scales the
loss and coupled weight decay so the summed replica gradients are those of the global batch. Masks of pruned
weights are applied once for all replicas after every step.
"""
from __future__ import annotations

from typing import Callable

from tfprune_mia.backend import tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry

STRATEGIES: Registry[Callable[[], tf.distribute.Strategy]] = Registry("distribution")

STRATEGIES.register("none")(tf.distribute.get_strategy)
STRATEGIES.register("mirrored")(lambda: tf.distribute.MirroredStrategy())
STRATEGIES.register("multi_worker")(lambda: tf.distribute.MultiWorkerMirroredStrategy())


def make_strategy(name: str) -> tf.distribute.Strategy:
    return STRATEGIES.get(name)()


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
