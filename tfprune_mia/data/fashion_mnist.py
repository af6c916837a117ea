"""Fashion-MNIST from the four IDX gzip files, read by a strict parser of our own.

Lookup order when no directory is given: Debian's dataset-fashion-mnist package, Keras' cache, then the
dataset's default directory, downloading there as a last resort.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import Dataset, RemoteFile, default_data_dir, resolve_file
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file

NAME = "fashion_mnist"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
MEAN, STD = 0.2860, 0.3530

_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of the canonical files, from tensorflow/datasets' url_checksums/fashion_mnist.txt.
TRAIN_IMAGES = RemoteFile("train-images-idx3-ubyte.gz", _BASE_URL + "train-images-idx3-ubyte.gz",
                          "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84")
TRAIN_LABELS = RemoteFile("train-labels-idx1-ubyte.gz", _BASE_URL + "train-labels-idx1-ubyte.gz",
                          "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845")
TEST_IMAGES = RemoteFile("t10k-images-idx3-ubyte.gz", _BASE_URL + "t10k-images-idx3-ubyte.gz",
                         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073")
TEST_LABELS = RemoteFile("t10k-labels-idx1-ubyte.gz", _BASE_URL + "t10k-labels-idx1-ubyte.gz",
                         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")

# Debian (dataset-fashion-mnist 0.0~git20200523.55506a9-1) re-gzips the same files without the original
# file name in the gzip header, so its .gz files are 23-24 bytes shorter and hash differently from the
# canonical ones. These digests are of the package's files, which match the MD5s that dpkg records.
REPACKED_SHA256: Dict[str, str] = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_DIR = Path("~/.keras/datasets/fashion-mnist")

# IDX type codes (third byte of the magic number) and the big-endian dtype each one stores.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
UBYTE = 0x08
# A corrupt header could claim terabytes; no real IDX file comes near this.
MAX_IDX_BYTES = 1 << 31


def _remotes() -> List[RemoteFile]:
    # Read at call time so that tests can patch the module-level constants.
    return [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]


def parse_idx_header(header: bytes, source: str) -> Tuple[int, Tuple[int, ...]]:
    """(type code, dims) from an IDX header; `header` is the 4-byte magic followed by the dims."""
    if len(header) < 4 or header[0] != 0 or header[1] != 0:
        raise DataError(f"{source} is not an IDX file (bad magic number {header[:4].hex()}); "
                        "it is corrupt or not Fashion-MNIST: delete it and download it again")
    type_code, ndim = header[2], header[3]
    if type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{source} has an invalid IDX header (type 0x{type_code:02x}, {ndim} dims); "
                        "the file is corrupt: delete it and download it again")
    if len(header) != 4 + 4 * ndim:
        raise DataError(f"{source} ends inside its IDX header; the file is truncated: download it again")
    return type_code, struct.unpack(f">{ndim}I", header[4:])


def read_idx(path: Path, expected_type: int, expected_tail: Tuple[int, ...]) -> np.ndarray:
    """Read a gzipped IDX file, checking type, dims and that the payload is exactly as long as declared."""
    try:
        with gzip.open(path, "rb") as stream:
            magic = stream.read(4)
            ndim = magic[3] if len(magic) == 4 else 0
            type_code, dims = parse_idx_header(magic + stream.read(4 * ndim), str(path))
            _check_layout(path, type_code, dims, expected_type, expected_tail)
            dtype = np.dtype(IDX_DTYPES[type_code])
            expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if expected_bytes > MAX_IDX_BYTES:
                raise DataError(f"{path} claims {expected_bytes} bytes of data; the header is corrupt: "
                                "delete the file and download it again")
            payload = stream.read(expected_bytes)
            # Reading past the payload also makes gzip check its CRC and end-of-stream marker.
            trailing = stream.read(1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is truncated or not a valid gzip file ({err}); "
                        "delete it and download it again") from None
    if len(payload) != expected_bytes:
        raise DataError(f"{path} holds {len(payload)} data bytes but its header declares {expected_bytes}; "
                        "the file is truncated: delete it and download it again")
    if trailing:
        raise DataError(f"{path} has data beyond the {expected_bytes} bytes its header declares; "
                        "the file is corrupt: delete it and download it again")
    return np.frombuffer(payload, dtype=dtype).reshape(dims)


def _check_layout(path: Path, type_code: int, dims: Sequence[int], expected_type: int,
                  expected_tail: Tuple[int, ...]) -> None:
    if type_code != expected_type or len(dims) != 1 + len(expected_tail) or tuple(dims[1:]) != expected_tail:
        wanted = "(N" + "".join(f", {d}" for d in expected_tail) + ")"
        raise DataError(f"{path} holds IDX type 0x{type_code:02x} with dims {tuple(dims)}, expected type "
                        f"0x{expected_type:02x} with dims {wanted}; it is not the expected Fashion-MNIST file")


def verify_fashion_checksum(path: Path, remote: RemoteFile) -> None:
    """Accept the canonical digest or Debian's re-gzipped one; nothing else is parsed."""
    accepted = {d for d in (remote.sha256, REPACKED_SHA256.get(remote.filename)) if d}
    if not accepted:
        return
    actual = sha256_file(path)
    if actual not in accepted:
        expected = " or ".join(f"{d[:12]}..." for d in sorted(accepted))
        raise ChecksumError(f"{NAME}: {path} has SHA-256 {actual[:12]}..., expected {expected} (canonical or "
                            "Debian's repack); the file is corrupt or another version: delete it and download "
                            "it again")


def candidate_dirs(data_dir: Optional[str]) -> List[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    return [DEBIAN_DIR, Path(KERAS_DIR).expanduser(), default_data_dir(NAME)]


def locate(data_dir: Optional[str], download: bool) -> Dict[str, Path]:
    """The first directory holding all four files; else download into the last candidate (if allowed)."""
    dirs = candidate_dirs(data_dir)
    for directory in dirs:
        paths = {r.filename: directory / r.filename for r in _remotes()}
        if all(p.is_file() for p in paths.values()):
            return paths
    target = dirs[-1]
    missing = [r for r in _remotes() if not (target / r.filename).is_file()]
    if not download:
        searched = ", ".join(str(d) for d in dirs)
        raise DataError(f"{NAME}: {missing[0].filename} not found (searched {searched}); put the four IDX "
                        f".gz files from {_BASE_URL} into {target}, install Debian's dataset-fashion-mnist, "
                        "or allow downloading")
    for remote in missing:
        # A fresh download must match the canonical digest; resolve_file checks it.
        resolve_file(NAME, remote, target, download=True)
    return {r.filename: target / r.filename for r in _remotes()}


def normalise(images: np.ndarray) -> np.ndarray:
    # In place, the same float32 operations: temporaries of all 70,000 images added ~210 MB to peak memory.
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    x -= np.float32(MEAN)
    x /= np.float32(STD)
    return x[..., None]


def _read_split(paths: Dict[str, Path], images: RemoteFile, labels: RemoteFile) -> Tuple[np.ndarray, np.ndarray]:
    x = read_idx(paths[images.filename], UBYTE, IMAGE_SHAPE)
    y = read_idx(paths[labels.filename], UBYTE, ())
    if len(x) != len(y):
        raise DataError(f"{NAME}: {images.filename} has {len(x)} images but {labels.filename} has {len(y)} "
                        "labels; the files come from different releases: download both again")
    if len(y) and y.max() >= NUM_CLASSES:
        raise DataError(f"{NAME}: {paths[labels.filename]} has label {y.max()}, expected 0..{NUM_CLASSES - 1}; "
                        "the file is corrupt or not Fashion-MNIST: download it again")
    return x, y


@register(NAME, num_classes=NUM_CLASSES, default_model="small_cnn",
          description="Zalando's Fashion-MNIST: 70,000 28x28 greyscale clothing images (IDX files)")
def load_fashion_mnist(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    paths = locate(data_dir, download)
    for remote in _remotes():  # all four verified before any is parsed
        verify_fashion_checksum(paths[remote.filename], remote)
    x_train, y_train = _read_split(paths, TRAIN_IMAGES, TRAIN_LABELS)
    x_test, y_test = _read_split(paths, TEST_IMAGES, TEST_LABELS)
    x = normalise(np.concatenate([x_train, x_test]))
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    return Dataset(NAME, x, y, NUM_CLASSES)
