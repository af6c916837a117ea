"""SVHN (cropped digits) from the official train_32x32.mat and test_32x32.mat; the "extra" split is unused."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import Dataset, RemoteFile, default_data_dir, resolve_file
from tfprune_mia.errors import DataError

NAME = "svhn"
NUM_CLASSES = 10
MEAN, STD = 0.5, 0.5

# SHA-256 digests from tensorflow/datasets' url_checksums/svhn_cropped.txt.
TRAIN = RemoteFile("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                   "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8")
TEST = RemoteFile("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                  "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b")


def read_mat(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """The raw X (32, 32, 3, N) and y arrays of one SVHN .mat file."""
    from scipy.io import loadmat

    try:
        contents = loadmat(path, variable_names=("X", "y"))
    except Exception as err:  # noqa: BLE001 - scipy signals damaged files with many exception types
        raise DataError(f"{path} is truncated or not a MATLAB v5 file ({type(err).__name__}: {err}); "
                        "delete it and download it again") from None
    if "X" not in contents or "y" not in contents:
        raise DataError(f"{path} lacks the X or y variable; it is not an SVHN cropped-digits file: "
                        "download train_32x32.mat / test_32x32.mat again")
    return contents["X"], contents["y"]


def svhn_arrays(x: np.ndarray, y: np.ndarray, source: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, int64 labels in 0..9) with SVHN's label 10 (digit 0) mapped to 0."""
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{source}: X has shape {x.shape} and dtype {x.dtype}, expected uint8 (32, 32, 3, N); "
                        "it is not the cropped-digits SVHN file: download it again")
    labels = np.asarray(y).reshape(-1)
    if labels.shape[0] != x.shape[3]:
        raise DataError(f"{source} has {x.shape[3]} images but {labels.shape[0]} labels; "
                        "the file is corrupt: download it again")
    if labels.size and (np.any(labels != np.round(labels)) or labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{source}: labels span [{labels.min()}, {labels.max()}], expected integers 1..10 "
                        "(10 = digit 0); the file is corrupt or another dataset: download it again")
    labels = labels.astype(np.int64) % 10
    return np.transpose(x, (3, 0, 1, 2)), labels


def normalise(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    return (x - np.float32(MEAN)) / np.float32(STD)


@register(NAME, num_classes=NUM_CLASSES, default_model="resnet18",
          description="SVHN cropped digits: 73,257 train + 26,032 test 32x32 colour images (.mat files)")
def load_svhn(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    directory = Path(data_dir) if data_dir is not None else default_data_dir(NAME)
    # Resolve (and verify) both files before parsing either, so a missing test file fails fast.
    paths = [resolve_file(NAME, remote, directory, download) for remote in (TRAIN, TEST)]
    images, labels = [], []
    for path in paths:
        x, y = svhn_arrays(*read_mat(path), path)
        images.append(x)
        labels.append(y)
    return Dataset(NAME, normalise(np.concatenate(images)), np.concatenate(labels), NUM_CLASSES)
