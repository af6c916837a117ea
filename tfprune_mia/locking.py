"""Advisory locks on run directories, so two processes started on one run root do not both do the same work.

Every stage is already resumable and its outputs are written atomically, so two concurrent runs never corrupt
each other; without a lock they only waste the machine by training the same models twice. With `directory_lock`
around a stage, the second process waits until the first has finished and then finds the stage done (its normal
resume path). A lock is an `fcntl.flock` on a hidden file inside the directory: the kernel releases it when its
holder exits or is killed, so a crashed run never leaves a stale lock behind.

A run root on a `tf.io.gfile` file system (GCS, `ram://`) has no flock. There the lock is a lease file (`Lease`):
claimed by renaming a claim file onto it without overwrite, verified after a settling delay, renewed by a heartbeat
and broken by others once its content has stopped changing for `stale_after` seconds of their own clock (no clock
synchronisation between machines needed). Its guarantees are weaker, and say so below; they suffice because the
lock only saves duplicated work: the stage outputs are written atomically and are the same whoever computes them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from tfprune_mia import fs
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
    directory = fs.path(directory)
    if isinstance(directory, fs.GPath):
        with Lease(directory / name).hold(timeout, notice):
            yield directory / name
        return
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
    """Whether some process (this one included, through another descriptor) holds `directory`'s lock now.
    On a `tf.io.gfile` file system: whether a lease file is there (a dead holder's lease counts until broken)."""
    directory = fs.path(directory)
    if isinstance(directory, fs.GPath):
        return Lease(directory / name).read() is not None
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


class Lease:
    """An exclusive lease on a `tf.io.gfile` path, for file systems without flock (object stores, `ram://`).

    Claim: write a claim file holding a fresh token, rename it onto the lease path without overwrite, wait
    `settle` seconds and read the lease back: it is held only if it still holds this token. Hold: a heartbeat
    thread rewrites the lease with an increasing counter every `renew_every` seconds. Release: delete it, if it is
    still ours. A waiter that sees the same lease content for `stale_after` seconds of its own monotonic clock
    takes the holder for dead (killed without releasing) and deletes it.

    Guarantees, honestly: tf.io.gfile's no-overwrite rename is a check then a rename, and on GCS a rename is a copy
    then a delete, so two claimants can both rename. The read-back after `settle` seconds makes all but the last
    writer back off, so mutual exclusion holds when every claimant's check-and-rename completes within `settle`
    seconds and a live holder's heartbeat lands within `stale_after` seconds. A holder that stalls longer (a
    suspended VM, a partitioned network) can lose its lease to a waiter; it then logs a warning and both run
    the stage. That duplicates work but cannot corrupt it: every stage writes its outputs atomically (upload then
    rename) and deterministically, and readers only trust a stage's completion marker.
    """

    settle = 1.0
    renew_every = 10.0
    stale_after = 60.0
    poll = POLL_SECONDS

    def __init__(self, path: "fs.GPath"):
        self.path = path
        self.token = uuid.uuid4().hex
        self._beats = 0
        self._stop = threading.Event()
        self._heart: Optional[threading.Thread] = None

    def _content(self) -> str:
        return json.dumps({"token": self.token, "beat": self._beats, "pid": os.getpid(),
                           "host": os.uname().nodename}) + "\n"

    def read(self) -> Optional[dict]:
        """The lease's content, None when there is none (or it vanished, or is half-written, while reading)."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _write(self, target: "fs.GPath", overwrite: bool) -> None:
        # Not "<lease name>.<...>": ram:// (and so the tests) counts any string prefix of a stored path as existing,
        # which would make the lease look taken by its own claim file.
        claim = self.path.with_name(f".{self.token}-{self._beats}.claim")
        claim.write_text(self._content())
        try:
            fs.rename(claim, target, overwrite=overwrite)
        finally:
            claim.unlink(missing_ok=True)

    def try_claim(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._write(self.path, overwrite=False)
        except FileExistsError:
            return False
        time.sleep(self.settle)  # let a racing claimant's rename land, then see whose token survived
        held = self.read()
        return held is not None and held.get("token") == self.token

    def _break_if_unchanged(self, seen: dict) -> bool:
        """Delete the lease if it still holds `seen` (a dead holder's); whether it was deleted."""
        if self.read() != seen:
            return False
        self.path.unlink(missing_ok=True)
        return True

    def _heartbeat(self) -> None:
        from absl import logging

        while not self._stop.wait(self.renew_every):
            current = self.read()
            if current is None or current.get("token") != self.token:
                logging.warning("lost the lock %s to another run (this one stalled for over %g s); both may now "
                                "compute the same stage, whose outputs are written atomically", self.path,
                                self.stale_after)
                return
            self._beats += 1
            try:
                self._write(self.path, overwrite=True)
            except Exception as err:  # a transient storage error: the next beat tries again
                logging.warning("could not renew the lock %s (%s)", self.path, err)

    @contextlib.contextmanager
    def hold(self, timeout: Optional[float] = None,
             notice: Callable[[str], None] = _default_notice) -> Iterator["Lease"]:
        from tfprune_mia.backend import tf

        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        seen: Tuple[Optional[dict], float] = (None, time.monotonic())
        try:
            while not self.try_claim():
                current = self.read()
                if current is None:
                    continue  # released (or broken) between our claim and the read: claim again at once
                if current != seen[0]:
                    seen = (current, time.monotonic())  # alive: its content changed since we last looked
                elif time.monotonic() - seen[1] >= self.stale_after:
                    if self._break_if_unchanged(current):
                        notice(f"{self.path.parent}: the lock of a run that stopped renewing it{_holder(current)} "
                               f"for {self.stale_after:g} s was broken; continuing")
                    continue
                if not told:
                    notice(f"{self.path.parent} is in use by another run{_holder(current)}; waiting for it to "
                           "finish (its finished stages are reused here)")
                    told = True
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"{self.path.parent} is still in use by another run{_holder(current)} after "
                                      f"{timeout:g} s; wait for it to finish or use another --run_root")
                time.sleep(self.poll)
        except tf.errors.OpError as err:
            raise StorageError(f"could not create the lock file {self.path} ({err.message.strip()[:160]}); fix the "
                               "bucket's permissions or pick another --run_root") from None
        self._heart = threading.Thread(target=self._heartbeat, name=f"lease {self.path}", daemon=True)
        self._heart.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._heart.join()
            current = self.read()
            if current is not None and current.get("token") == self.token:
                self.path.unlink(missing_ok=True)


def _holder(content: Optional[dict]) -> str:
    return f" (pid {content.get('pid')} on {content.get('host')})" if content else ""
