"""Named fault points, so tests can prove that a killed or failing run loses nothing and resumes.

The library calls `point(name)` at every place where a crash matters: stage boundaries, between a file and
its completion marker, inside training epochs and inside every atomic write. Normally that is one dictionary
lookup. A test sets

    TFPRUNE_MIA_FAULT=<pattern>[:<count>[:<action>]]

in a subprocess's environment; the `count`-th (default 1st) point whose name matches the glob `pattern` then
performs `action`:

    kill     SIGKILL to this process: a real, uncatchable crash, as the OOM killer or a pre-empted node does it
    enospc   raise OSError(ENOSPC), as a full disk does inside a write
    trigger  return True, for faults the caller simulates itself (e.g. a NaN training loss)

Points (see the callers):
    stage.original      before an original model is trained (after its cache was found missing)
    stage.pruned        before a model is pruned and fine-tuned
    stage.model_saved   between a stage's model.h5 and its meta.json completion marker
    stage.signals       after a signals file was written
    stage.attack        after an attack model was fitted, before it scores the victim
    stage.report        between the scores file and the results JSON
    train.checkpoint    between an epoch's TF checkpoint and the state.json pointing at it
    train.epoch         after an epoch's checkpoint is complete
    train.loss          (trigger) the finished epoch's loss is treated as NaN
    write/<file name>   inside an atomic write, after the data is in the temp file, before the rename
"""
from __future__ import annotations

import errno
import fnmatch
import os
import signal
from typing import Dict, Optional, Tuple

from tfprune_mia.errors import ConfigError

ENV = "TFPRUNE_MIA_FAULT"
ACTIONS = ("kill", "enospc", "trigger")

# Matching hits per fault spec in this process; a spec is one (pattern, count, action) string.
_hits: Dict[str, int] = {}


def parse(spec: str) -> Tuple[str, int, str]:
    parts = spec.split(":")
    try:
        pattern = parts[0]
        count = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        action = parts[2] if len(parts) > 2 else "kill"
    except ValueError:
        pattern, count, action = "", 0, ""
    if not pattern or count < 1 or action not in ACTIONS or len(parts) > 3:
        raise ConfigError(f"{ENV}={spec!r} is not <point>[:<count>[:<action>]] with count >= 1 and action one "
                          f"of {', '.join(ACTIONS)}; fix or unset it")
    return pattern, count, action


def point(name: str) -> bool:
    """A named place where a fault may be injected; True only for a `trigger` fault that fires here."""
    spec: Optional[str] = os.environ.get(ENV)
    if not spec:
        return False
    pattern, count, action = parse(spec)
    if not fnmatch.fnmatchcase(name, pattern):
        return False
    _hits[spec] = _hits.get(spec, 0) + 1
    if _hits[spec] != count:
        return False
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
    return True


def reset() -> None:
    """Forget the hits counted so far (for in-process tests)."""
    _hits.clear()
