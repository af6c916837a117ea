"""The one TensorFlow and the one Keras that every module of the package uses.

`from tfprune_mia.backend import tf, keras` instead of importing them directly: it guarantees that
TF_USE_LEGACY_KERAS=1 is set before TensorFlow is imported, so tfmot, TF Privacy and keras-tuner all see the
same `tf_keras` classes as our models.
"""
import os

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


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow so that the same seed reproduces the same numbers on CPU."""
    keras.utils.set_random_seed(int(seed) % (2**31))


def enable_determinism() -> None:
    """Make TF ops deterministic; called once by binaries (it is process-wide and cannot be undone)."""
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF
        pass
