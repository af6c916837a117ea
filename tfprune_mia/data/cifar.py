"""CIFAR-10 and CIFAR-100 from the official python tarballs, unpickled by a restricted unpickler.

The tarball is checksummed before it is opened and is never extracted to disk; its batch members are read
in one streaming pass. The batches are Python 2 pickles, so only numpy's array reconstruction is allowed
to resolve: any other global (os.system, builtins.eval, ...) is refused instead of being called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import Dataset, RemoteFile, default_data_dir, parse_tar_members, resolve_file
from tfprune_mia.errors import DataError

# Both CIFARs use the CIFAR-10 statistics, as in the authors' code (docs/paper_map.md).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
IMAGE_BYTES = 3 * 32 * 32

# SHA-256 digests from tf_keras 2.15 (tf_keras/src/datasets/cifar10.py and cifar100.py, `file_hash`).
CIFAR10 = RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
CIFAR100 = RemoteFile("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")

# Canonical record order (torchvision's, as the authors' split): the official training batches, then the test batch.
CIFAR10_MEMBERS = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + (
    "cifar-10-batches-py/test_batch",)
CIFAR100_MEMBERS = ("cifar-100-python/train", "cifar-100-python/test")


class BatchUnpickler(pickle.Unpickler):
    """Resolves only what a pickled numpy array needs; a CIFAR batch is otherwise plain dicts, lists, bytes."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),  # the module's name in numpy >= 2 pickles
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def unpickle_batch(raw: bytes, source: str) -> dict:
    try:
        batch = BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"{source} is not a plain CIFAR batch ({err}); the file is corrupt or tampered "
                        "with: delete the tarball and download it again") from None
    except Exception as err:  # noqa: BLE001 - a damaged pickle can fail in many ways; all mean "corrupt"
        raise DataError(f"{source} is a corrupt pickle ({type(err).__name__}: {err}); "
                        "delete the tarball and download it again") from None
    if not isinstance(batch, dict):
        raise DataError(f"{source} holds a {type(batch).__name__}, not a CIFAR batch dict; "
                        "delete the tarball and download it again")
    return batch


def batch_arrays(batch: dict, label_key: bytes, num_classes: int, source: str) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, int64 labels) from one unpickled batch, checked for shape and label range."""
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shape = getattr(data, "shape", None)
        raise DataError(f"{source}: b'data' is {type(data).__name__} {shape}, expected uint8 (N, {IMAGE_BYTES}); "
                        "this is not the python version of the dataset: download the *-python.tar.gz tarball")
    if labels is None:
        raise DataError(f"{source} has no {label_key!r} entry; it is not the expected CIFAR batch: "
                        "download the right tarball")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{source}: {label_key!r} is not a list of integers; the file is corrupt: "
                        "download it again") from None
    if len(y) != len(data):
        raise DataError(f"{source} has {len(data)} images but {len(y)} labels; the file is corrupt: "
                        "download it again")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{source}: labels span [{y.min()}, {y.max()}], expected 0..{num_classes - 1}; "
                        "the file is corrupt or another dataset: download it again")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, y


def _read_bytes(stream, source: str) -> bytes:
    return stream.read()


def normalise(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


def load_cifar(name: str, remote: RemoteFile, members: Sequence[str], label_key: bytes, num_classes: int,
               data_dir: Optional[str], download: bool) -> Dataset:
    directory = Path(data_dir) if data_dir is not None else default_data_dir(name)
    path = resolve_file(name, remote, directory, download)  # verifies the digest before anything is opened
    raw = parse_tar_members(path, {name: _read_bytes for name in members})
    images, labels = [], []
    for member in members:
        source = f"{path}:{member}"
        x, y = batch_arrays(unpickle_batch(raw.pop(member), source), label_key, num_classes, source)
        images.append(x)
        labels.append(y)
    return Dataset(name, normalise(np.concatenate(images)), np.concatenate(labels), num_classes)


@register("cifar10", num_classes=10, default_model="resnet18",
          description="CIFAR-10: 60,000 32x32 colour images in 10 classes (python tarball)")
def load_cifar10(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    return load_cifar("cifar10", CIFAR10, CIFAR10_MEMBERS, b"labels", 10, data_dir, download)


@register("cifar100", num_classes=100, default_model="resnet18",
          description="CIFAR-100: 60,000 32x32 colour images in 100 fine classes (python tarball)")
def load_cifar100(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    return load_cifar("cifar100", CIFAR100, CIFAR100_MEMBERS, b"fine_labels", 100, data_dir, download)
