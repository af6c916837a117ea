"""Third-party messages that tell a user of this package nothing they can act on, silenced unless asked for.

TensorFlow 2.15 and tf_keras print, on every run of a binary: three native `Unable to register cuDNN/cuFFT/cuBLAS
factory` errors on machines without a GPU (a known TF 2.15 packaging wart), a legacy-format warning for every
HDF5 model save (we save h5 on purpose: SavedModel reloads of custom layers were inexact, see docs), "compiled
metrics have yet to be built" after loading an h5 model we never evaluate through `compiled_metrics`,
initializer-serialisation warnings for the filter pruners' rebuilt layers, tf.function retracing warnings
for models of different shapes in one process, and tf.distribute's info line for every all-reduce it traces. Only those messages are filtered (by their text), so any other
warning still shows.

`configure()` applies the policy: quiet unless TFPRUNE_MIA_VERBOSE=1 (the binaries set it from `--verbosity`).
It must run before TensorFlow's first import for the native lines (TF reads TF_CPP_MIN_LOG_LEVEL once); the
package's `__init__` calls it, so every import path is covered.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from typing import Optional

VERBOSE_ENV = "TFPRUNE_MIA_VERBOSE"
NATIVE_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
# The cuDNN/cuFFT/cuBLAS lines are logged at ERROR level, so only 3 (FATAL only) hides them; a user who set the
# variable keeps their value.
QUIET_NATIVE_LOG_LEVEL = "3"

PYTHON_WARNINGS = (
    r"You are saving your model as an HDF5 file",
    r"The `keras\.initializers\.serialize\(\)` API should only be used",
)
TF_LOG_MESSAGES = (
    r"Compiled the loaded model, but the compiled metrics have yet to be built",
    r"triggered tf\.function retracing",
    # the progress line's per-batch update on tiny batches; it is throttled and costs microseconds per call
    r"is slow compared to the batch time",
    # tf.distribute: one line per all-reduce it traces (hundreds per multi_worker run)
    r"^Collective (all_reduce|batch_all_gather)",
)


class _MessageFilter(logging.Filter):
    """Drops log records whose message matches one of the known-noise patterns."""

    def __init__(self, patterns):
        super().__init__()
        self.pattern = re.compile("|".join(patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge; let logging report it
            return True
        return not self.pattern.search(message)


_TF_FILTER = _MessageFilter(TF_LOG_MESSAGES)
_state = {"native_level_set": False}


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def configure(verbose: Optional[bool] = None) -> None:
    """Silence (or, verbose, restore) the known noise. `verbose=None` reads TFPRUNE_MIA_VERBOSE; an explicit
    value is also written there, so child processes and a later first TensorFlow import follow it."""
    if verbose is None:
        verbose = is_verbose()
    else:
        os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    tf_logger = logging.getLogger("tensorflow")  # the logger tf.get_logger() returns; no TF import needed
    if verbose:
        if _state["native_level_set"]:
            os.environ.pop(NATIVE_LOG_ENV, None)
            _state["native_level_set"] = False
        warnings.filters[:] = [f for f in warnings.filters if not _is_our_filter(f)]
        tf_logger.removeFilter(_TF_FILTER)
        return
    if NATIVE_LOG_ENV not in os.environ:
        os.environ[NATIVE_LOG_ENV] = QUIET_NATIVE_LOG_LEVEL
        _state["native_level_set"] = True
    for pattern in PYTHON_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
    tf_logger.addFilter(_TF_FILTER)  # idempotent: logging keeps one copy of a filter object


def _is_our_filter(entry) -> bool:
    action, message, category, _, _ = entry
    return action == "ignore" and category is UserWarning and message is not None and \
        message.pattern in PYTHON_WARNINGS
