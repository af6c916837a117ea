"""Advisory locks on run directories, so two processes started on one run root do not both do the same work.

Every stage is already resumable and its outputs are written atomically, so two concurrent runs never corrupt
each other; without a lock they only waste the machine by training the same models twice. With `directory_lock`
around a stage, the second process waits until the first has finished and then finds the stage done (its normal
resume path). A lock is an `fcntl.flock` on a hidden file inside the directory: the kernel releases it when its
holder exits or is killed, so a crashed run never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from tfprune_mia.errors import StorageError, TfpruneError

LOCK_NAME = ".lock"
POLL_SECONDS = 0.5


class LockTimeout(TfpruneError):
    """Another process kept holding a run directory's lock for longer than the caller wanted to wait."""


def _default_notice(message: str) -> None:
    from absl import logging

    logging.warning("%s", message)


@contextlib.contextmanager
def directory_lock(directory: os.PathLike, name: str = LOCK_NAME, timeout: Optional[float] = None,
                   notice: Callable[[str], None] = _default_notice) -> Iterator[Path]:
    """Hold an exclusive lock on `directory` (created if missing) for the duration of the block.

    If another process holds it, `notice` is called once with a line saying so, then this waits: forever when
    `timeout` is None, else until `timeout` seconds have passed, raising LockTimeout. Yields the lock file.
    Locks are per process and not re-entrant: do not nest two locks on the same directory in one process.
    """
    directory = Path(directory)
    path = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as err:
        raise StorageError(f"could not create the lock file {path} ({err.strerror or err}); fix the directory's "
                           "permissions or pick another --run_root") from None
    try:
        if not _try_lock(handle):
            holder = _read_holder(handle)
            notice(f"{directory} is in use by another run{holder}; waiting for it to finish "
                   "(its finished stages are reused here)")
            deadline = None if timeout is None else time.monotonic() + timeout
            while not _try_lock(handle):
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"{directory} is still in use by another run{holder} after {timeout:g} s; "
                                      "wait for it to finish or use another --run_root")
                time.sleep(POLL_SECONDS)
        _write_holder(handle)
        yield path
    finally:
        handle.close()  # closing the descriptor releases the flock


def is_locked(directory: os.PathLike, name: str = LOCK_NAME) -> bool:
    """Whether some process (this one included, through another descriptor) holds `directory`'s lock now."""
    path = Path(directory) / name
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        if _try_lock(handle):
            return False
        return True


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _write_holder(handle) -> None:
    # Only informative (the flock is the lock): lets the waiting process name who it waits for.
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {os.uname().nodename}\n")
    handle.flush()


def _read_holder(handle) -> str:
    handle.seek(0)
    text = handle.read().split()
    return f" (pid {text[0]} on {text[1]})" if len(text) >= 2 else ""
