"""Attack metrics as TensorBoard scalars, so attacks compare across configurations in one dashboard.

Each configuration writes to its own log directory (a TensorBoard "run"); the same tag in every run
(e.g. `pruned/samia/auc`) puts the configurations side by side in the Scalars and Time Series tabs.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Dict, Mapping

from tfprune_mia.errors import ConfigError


def flatten_metrics(nested: Mapping, prefix: str = "") -> Dict[str, float]:
    """{"pruned": {"samia": {"auc": 0.6}}} -> {"pruned/samia/auc": 0.6}; non-numeric leaves (paths, notes,
    None, booleans) are left out, numbers kept as float."""
    flat = {}
    for key, value in nested.items():
        tag = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, tag))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            flat[tag] = float(value)
    return flat


def log_metrics(metrics: Mapping[str, float], log_dir: os.PathLike, step: int = 0) -> int:
    """Write each `tag -> value` of a flat dict as a scalar at `step` in `log_dir`; returns how many were
    written. Non-finite values are written too (TensorBoard shows them as gaps), names must be tags."""
    from tfprune_mia.backend import tf

    for tag, value in metrics.items():
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"metric name {tag!r} is not a TensorBoard tag; use a non-empty string such as "
                              "'pruned/samia/auc'")
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ConfigError(f"metric {tag}={value!r} is not a number; pass flatten_metrics(report) to keep only "
                              "the numeric ones")
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for tag, value in metrics.items():
                tf.summary.scalar(tag, float(value) if math.isfinite(value) else float("nan"), step=step)
        writer.flush()
    finally:
        writer.close()
    return len(metrics)
