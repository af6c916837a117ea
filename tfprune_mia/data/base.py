"""The Dataset record every loader returns, plus verified download / local-file resolution."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Optional, Tuple

import numpy as np

from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import atomic_path, sha256_file


@dataclasses.dataclass(frozen=True)
class Dataset:
    """All records of a dataset in the authors' canonical order (official train then test), normalised.

    x: float32 inputs, NHWC for images, flat for tabular data. y: int64 labels in [0, num_classes).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self):
        check_arrays(self.name, self.x, self.y, self.num_classes)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)


def check_arrays(name: str, x: np.ndarray, y: np.ndarray, num_classes: int,
                 expected_shape: Optional[Tuple[int, ...]] = None) -> None:
    """Shape and label-range checks shared by every loader; each failure names the dataset and the fix."""
    if x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels (shapes {x.shape}, {y.shape}); "
                        "the files are mis-matched or truncated: re-download them")
    if expected_shape is not None and tuple(x.shape[1:]) != tuple(expected_shape):
        raise DataError(f"{name}: records have shape {x.shape[1:]}, expected {expected_shape}; "
                        "the file is not the expected version of the dataset")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{name}: labels span [{y.min()}, {y.max()}], expected [0, {num_classes - 1}]; "
                        "the file is corrupt or uses another label encoding")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name}: inputs contain NaN or inf; the file is corrupt: re-download it")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A dataset file with its canonical URL and SHA-256 (None where no canonical digest is published)."""

    filename: str
    url: str
    sha256: Optional[str]


def resolve_file(dataset: str, remote: RemoteFile, data_dir: os.PathLike, download: bool = True) -> Path:
    """Return a verified local copy of `remote` in `data_dir`, downloading it only if absent and allowed.

    The checksum is verified before any parsing, so an unverified file is never unpickled or unpacked.
    """
    data_dir = Path(data_dir)
    path = data_dir / remote.filename
    if not path.exists():
        if not download:
            raise DataError(f"{dataset}: {path} not found; put {remote.filename} there "
                            f"(from {remote.url}) or allow downloading")
        _download(dataset, remote, path)
    verify_checksum(dataset, path, remote.sha256)
    return path


def verify_checksum(dataset: str, path: Path, expected: Optional[str]) -> None:
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"{dataset}: {path} has SHA-256 {actual[:12]}..., expected {expected[:12]}...; "
                            "the file is corrupt or a different version: delete it and download it again")


def _download(dataset: str, remote: RemoteFile, path: Path) -> None:
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response, atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
    except OSError as err:
        raise DataError(f"{dataset}: could not download {remote.url} ({err}); download it by hand "
                        f"into {path.parent} and run again") from None


def default_data_dir(dataset: str) -> Path:
    """Where a dataset's files live unless --data_dir says otherwise: $TFPRUNE_MIA_DATA/<dataset>."""
    root = os.environ.get("TFPRUNE_MIA_DATA", os.path.join(os.path.expanduser("~"), ".tfprune_mia", "data"))
    return Path(root) / dataset


def parse_tar_members(path: Path, parsers: Dict[str, Callable[[BinaryIO, str], object]]) -> Dict[str, object]:
    """Parse the named members of a .tar.gz in one streaming pass, straight from the archive (never extracted:
    no path in the archive can write anywhere). Callers pass only verified archives."""
    results: Dict[str, object] = {}
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in parsers or name in results:
                    continue
                if not member.isfile():
                    raise DataError(f"{path}: member {member.name} is not a regular file; the archive is not "
                                    "the official one: delete it and download it again")
                results[name] = parsers[name](tar.extractfile(member), f"{path}:{name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is truncated or not a valid tar.gz/.tgz ({err}); "
                        "delete it and download it again") from None
    missing = [name for name in parsers if name not in results]
    if missing:
        raise DataError(f"{path} lacks the member {missing[0]}; it is not the expected archive: "
                        "delete it and download it again")
    return results
