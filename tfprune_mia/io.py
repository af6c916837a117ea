"""Atomic, safe file I/O for run directories: a killed run never leaves a half-written file."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tfprune_mia import faults, fs
from tfprune_mia.errors import CheckpointError, StorageError

# A failed write with one of these errnos is the user's environment (disk, quota, permissions), not a bug.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


@contextlib.contextmanager
def atomic_path(path: os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    For a `tf.io.gfile` path the temporary file is local (Keras h5, savez and PNG writers need a real file) and
    is uploaded onto `path` (fs.upload) when the block succeeds."""
    path = fs.path(path)
    if isinstance(path, fs.GPath):
        with _remote_atomic_path(path, suffix) as tmp:
            yield tmp
        return
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        faults.point(f"write/{path.name}")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600; the finished file gets the mode a plain open() would give it, like checkpoints.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as err:
        if not _is_storage_error(err):
            raise
        # The temp file is removed below and `path` was never touched: finished artefacts stay as they were.
        raise StorageError(f"could not write {path} ({err.strerror or err}); free disk space or fix the "
                           "directory's permissions (or pick another --run_root) and re-run") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def _remote_atomic_path(path: "fs.GPath", suffix: str) -> Iterator[Path]:
    from tfprune_mia.backend import tf

    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        faults.point(f"write/{path.name}")
        fs.upload(tmp, path)
    except tf.errors.OpError as err:
        raise StorageError(f"could not write {path} ({err.message.strip().splitlines()[0][:160]}); check the "
                           "bucket's permissions and quota (or pick another --run_root) and re-run") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask can only read by setting,
    which would briefly give files other threads create the wrong mode)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_storage_error(err: OSError) -> bool:
    # h5py reports a full disk as an OSError without errno, with the C library's message inside its text.
    return err.errno in STORAGE_ERRNOS or "No space left on device" in str(err)


def write_json(path: os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path: os.PathLike, rows: list) -> None:
    """Flat records (dicts) as CSV, columns in first-seen order, written atomically."""
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)


def read_json(path: os.PathLike) -> Any:
    path = fs.path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; re-run the stage that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); delete it and re-run") from None


def write_npz(path: os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def read_npz(path: os.PathLike) -> dict:
    """Load arrays without pickle: a cached file is data, never code."""
    path = fs.path(path)
    try:
        source = io.BytesIO(path.read_bytes()) if isinstance(path, fs.GPath) else path
        with np.load(source, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; re-run the stage that writes it") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); delete it and re-run") from None


def sha256_file(path: os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    path = fs.path(path)
    with (path.open("rb") if isinstance(path, fs.GPath) else open(path, "rb")) as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 10) -> str:
    """A short hash of a JSON-serialisable object, stable across processes and machines."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, fs.GPath)):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
