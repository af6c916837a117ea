"""The file-system layer of run roots and study directories: a local directory or any `tf.io.gfile` path
(`gs://bucket/runs` on a cluster, `ram://` in tests).

`path()` turns a user's string into a `pathlib.Path` for local paths (unchanged behaviour: fsync'd atomic renames,
flock locks) or into a `GPath` for `scheme://` paths. `GPath` offers the part of pathlib's API the package uses,
every call going through `tf.io.gfile`, so stage code reads `store.meta_path.exists()` whatever the storage.
`GPath` deliberately has no `__fspath__`: a local-only call on a remote path (`open`, `np.load`, `os.replace`,
h5py) fails loudly with a TypeError instead of quietly creating a local directory named `gs:`. Whatever needs a
local file (h5 models, savez) writes a local temporary file and `upload`s it, or reads through `local_copy`.

Object stores have no atomic rename: `upload` writes the object under a temporary name and renames it with
overwrite, which on GCS is a copy then a delete. A reader therefore sees either no file or a whole file (the
copy of a finished object is whole); the completion markers (meta.json, result JSON, written last) keep that
meaning.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path, PurePath, PurePosixPath
from typing import Iterator, List, Union

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _gfile():
    from tfprune_mia.backend import tf

    return tf.io.gfile


def is_remote(value: Union[str, os.PathLike, "GPath"]) -> bool:
    """Whether `value` names a `scheme://` location other than the local `file://`."""
    if isinstance(value, GPath):
        return True
    if isinstance(value, PurePath):
        return False
    match = _SCHEME.match(str(value))
    return bool(match) and match.group(1).lower() != "file"


def scheme_problem(value: str) -> str:
    """Why TensorFlow cannot use the `scheme://` path `value` here ('' when it can). Checks only that a file
    system is registered for the scheme (no network: credentials and buckets are checked by the first write)."""
    match = _SCHEME.match(value)
    if not match:
        return ""
    scheme = match.group(1).lower()
    if not value[match.end():].strip("/"):
        return f"{value} names no location after {scheme}://; pass e.g. {scheme}://bucket/runs"
    from tfprune_mia.backend import tf

    schemes = sorted(s for s in tf.io.gfile.get_registered_schemes() if s)
    if scheme not in schemes:
        return (f"TensorFlow has no file system for {scheme}:// here (it has {', '.join(schemes)}); fix the path "
                "or install the package that registers it (e.g. tensorflow-io for s3://)")
    return ""


class GPath:
    """A path on a `tf.io.gfile` file system: `scheme://` + a POSIX path (for GCS the bucket is its first part)."""

    __slots__ = ("_scheme", "_path")

    def __init__(self, value: Union[str, "GPath"]):
        if isinstance(value, GPath):
            self._scheme, self._path = value._scheme, value._path
            return
        match = _SCHEME.match(str(value))
        if not match:
            raise ValueError(f"{value!r} has no scheme://; use pathlib.Path for local paths")
        self._scheme = match.group(1)
        self._path = PurePosixPath(str(value)[match.end():] or ".")

    def _with(self, path: PurePosixPath) -> "GPath":
        made = object.__new__(GPath)
        made._scheme, made._path = self._scheme, path
        return made

    # -- pure path operations -----------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self._scheme}://{'' if str(self._path) == '.' else self._path}"

    def __repr__(self) -> str:
        return f"GPath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, GPath) and (self._scheme, self._path) == (other._scheme, other._path)

    def __lt__(self, other: "GPath") -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash((self._scheme, self._path))

    def __truediv__(self, other: Union[str, PurePath]) -> "GPath":
        return self._with(self._path / str(other))

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def stem(self) -> str:
        return self._path.stem

    @property
    def suffix(self) -> str:
        return self._path.suffix

    @property
    def parent(self) -> "GPath":
        return self._with(self._path.parent)

    def with_suffix(self, suffix: str) -> "GPath":
        return self._with(self._path.with_suffix(suffix))

    def with_name(self, name: str) -> "GPath":
        return self._with(self._path.with_name(name))

    def relative_to(self, other: Union[str, "GPath"]) -> PurePosixPath:
        other = GPath(other)
        if other._scheme != self._scheme:
            raise ValueError(f"{self} is not under {other}")
        return self._path.relative_to(other._path)

    # -- file system ----------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return _gfile().exists(str(self))

    def is_dir(self) -> bool:
        return _gfile().isdir(str(self))

    def is_file(self) -> bool:
        return self.exists() and not self.is_dir()

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        gfile = _gfile()
        if self.exists():
            if not exist_ok:
                raise FileExistsError(str(self))
            return
        if not parents and not gfile.exists(str(self.parent)):
            raise FileNotFoundError(str(self.parent))
        gfile.makedirs(str(self))

    def open(self, mode: str = "r"):
        if mode.startswith("w") and _gfile().exists(str(self)) and not self.is_dir():
            # ram:// (TF 2.15) appends when an existing file is opened for writing; every other file system
            # truncates it, as this does.
            _gfile().remove(str(self))
        return _gfile().GFile(str(self), mode)

    def read_bytes(self) -> bytes:
        """The whole file; FileNotFoundError when it is missing, as pathlib raises."""
        from tfprune_mia.backend import tf

        try:
            with self.open("rb") as handle:
                return handle.read()
        except tf.errors.NotFoundError:
            raise FileNotFoundError(str(self)) from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        with self.open("wb") as handle:
            handle.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def unlink(self, missing_ok: bool = False) -> None:
        from tfprune_mia.backend import tf

        try:
            _gfile().remove(str(self))
        except tf.errors.NotFoundError:
            if not missing_ok:
                raise FileNotFoundError(str(self)) from None

    def iterdir(self) -> Iterator["GPath"]:
        for name in sorted(_gfile().listdir(str(self))):
            yield self / name.rstrip("/")

    def glob(self, pattern: str) -> Iterator["GPath"]:
        for found in sorted(_gfile().glob(posixpath.join(str(self), pattern))):
            yield GPath(found)

    def rglob(self, pattern: str) -> Iterator["GPath"]:
        """Files at any depth below this directory whose path matches `pattern` from the right, as pathlib's."""
        for directory, _, files in _gfile().walk(str(self).rstrip("/")):
            for name in sorted(files):
                found = GPath(posixpath.join(directory, name))
                if found._path.match(pattern):
                    yield found


AnyPath = Union[Path, GPath]


def path(value: Union[str, os.PathLike, GPath]) -> AnyPath:
    """A local `Path` or a `GPath`, whichever `value` names (`file://` counts as local)."""
    if isinstance(value, (GPath, Path)):
        return value
    text = os.fspath(value) if not isinstance(value, str) else value
    if is_remote(text):
        return GPath(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(text)


def rename(source, target, overwrite: bool = False) -> None:
    """Rename `source` onto `target`; with overwrite=False, FileExistsError when `target` exists. Locally that
    refusal is atomic (a hard link); through tf.io.gfile it is a check then a rename on every file system, so two
    racing callers can both succeed (locking.Lease verifies its claims for that reason)."""
    from tfprune_mia.backend import tf

    if not is_remote(source) and not is_remote(target):
        if overwrite:
            os.replace(source, target)
            return
        os.link(source, target)  # fails with FileExistsError, atomically, where os.rename would overwrite
        os.unlink(source)
        return
    try:
        _gfile().rename(str(source), str(target), overwrite=overwrite)
    except tf.errors.AlreadyExistsError:
        raise FileExistsError(str(target)) from None


def glob(pattern: str) -> List[str]:
    """Paths matching `pattern` (`*`, `?`, `[..]` within one directory level; locally `**` also spans
    directories, as the shell's globstar), sorted."""
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    import glob as local_glob

    return sorted(local_glob.glob(pattern, recursive=True))


def rmtree(value) -> None:
    if is_remote(value):
        from tfprune_mia.backend import tf

        gfile = _gfile()
        if not gfile.exists(str(value)):
            return
        try:
            gfile.rmtree(str(value))
        except tf.errors.NotFoundError:
            # ram:// answers NotFound for a directory it knows only through the files below it: delete those
            for directory, _, files in list(gfile.walk(str(value), topdown=False)):
                for name in files:
                    gfile.remove(posixpath.join(directory, name))
    else:
        shutil.rmtree(value, ignore_errors=True)


def mtime_ns(value) -> int:
    """Last modification time in ns (0 where the file system keeps none, as ram:// does)."""
    target = path(value)
    if isinstance(target, GPath):
        return int(_gfile().stat(str(target)).mtime_nsec)
    return target.stat().st_mtime_ns


def upload(local: os.PathLike, target: AnyPath) -> None:
    """Copy the finished local file `local` onto `target` so that readers never see a partial `target`: write a
    uniquely named sibling, then rename it over `target`."""
    gfile = _gfile()
    target = path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    gfile.copy(os.fspath(local), str(staging), overwrite=True)
    try:
        gfile.rename(str(staging), str(target), overwrite=True)
    finally:
        if gfile.exists(str(staging)):
            gfile.remove(str(staging))


@contextlib.contextmanager
def local_copy(value) -> Iterator[Path]:
    """A local path holding `value`'s bytes for readers that need a real file (h5py, Keras h5 loading): the path
    itself when local, else a temporary download removed afterwards. A missing remote file yields a missing
    local path, so the reader raises its usual FileNotFoundError / OSError."""
    target = path(value)
    if not isinstance(target, GPath):
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="tfprune_mia-") as tmp:
        local = Path(tmp) / target.name
        if target.exists():
            _gfile().copy(str(target), str(local), overwrite=True)
        yield local
