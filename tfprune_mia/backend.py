"""The one TensorFlow and the one Keras that every module of the package uses.

`from tfprune_mia.backend import tf, keras` instead of importing them directly: it guarantees that
TF_USE_LEGACY_KERAS=1 is set before TensorFlow is imported, so tfmot, TF Privacy and keras-tuner all see the
same `tf_keras` classes as our models.
"""
import contextlib
import os
from typing import Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise ImportError(
        "TF_USE_LEGACY_KERAS is set to something other than 1; unset it or set it to 1 so tfmot, "
        "TF Privacy and keras-tuner share one Keras with tfprune_mia")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


def _skip_autograph_for_tf_keras() -> None:
    """Autograph leaves the `keras` package alone but not `tf_keras`, the same code under another name: it
    re-converts hundreds of Keras internals on the first `fit` of each process (~15 s of 18 on 2 cores).
    tfmot's pruning wrappers are written with explicit tf.cond / smart_cond, so converting them only adds
    tracing time to every pruned model's first training step (~0.1-0.3 CPU-s per ColumnFC fine-tune)."""
    from tensorflow.python.autograph.core import config as autograph_config

    for package in ("tf_keras", "tensorflow_model_optimization"):
        rule = autograph_config.DoNotConvert(package)
        if all(str(existing) != str(rule) for existing in autograph_config.CONVERSION_RULES):
            autograph_config.CONVERSION_RULES = (rule,) + tuple(autograph_config.CONVERSION_RULES)


_skip_autograph_for_tf_keras()

# Sensitivity features are finite differences at eps=1e-3: TF32 would swamp them (docs/deviations.md).
tf.config.experimental.enable_tensor_float_32_execution(False)


@contextlib.contextmanager
def unregistering_custom_gradients() -> Iterator[None]:
    """Forget, at the end of the block, the gradients that tf.custom_gradient functions registered in it.

    In a graph, TF 2.15 registers each traced call's gradient closure in its process-wide gradient registry under
    a fresh name and never removes it; the closure holds the traced graph and every tensor it captured, so each
    model traced with custom gradients (SAMIA's layer norms and GELUs: 27 per attack model, ~25 MiB) stayed in
    memory for good. Gradient tapes call the closure they recorded themselves; only symbolic tf.gradients on the
    block's graphs would look the registry up, so wrap only code whose graphs nothing differentiates afterwards."""
    from tensorflow.python.framework import ops as tf_ops

    registry = tf_ops._gradient_registry._registry
    before = set(registry)
    try:
        yield
    finally:
        for name in [name for name in registry if name not in before and name.startswith("CustomGradient-")]:
            del registry[name]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow so that the same seed reproduces the same numbers on CPU."""
    keras.utils.set_random_seed(int(seed) % (2**31))


def enable_determinism() -> None:
    """Make TF ops deterministic; called once by binaries (it is process-wide and cannot be undone)."""
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF
        pass
