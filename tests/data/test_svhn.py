"""SVHN loader on tiny MATLAB files written with scipy.io.savemat in the official (32, 32, 3, N) layout."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from tfprune_mia.data import DATASETS, svhn
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file


def svhn_x(count: int, first: int) -> np.ndarray:
    """(32, 32, 3, count): image k is first + k in R, 50 in G, 250 in B, and R at (row 0, column 1) is 255."""
    x = np.empty((32, 32, 3, count), np.uint8)
    x[:, :, 0, :] = first + np.arange(count, dtype=np.uint8)
    x[:, :, 1, :], x[:, :, 2, :] = 50, 250
    x[0, 1, 0, :] = 255
    return x


def write_mat(path: Path, x: np.ndarray, labels) -> Path:
    savemat(path, {"X": x, "y": np.asarray(labels, np.uint8).reshape(-1, 1)})
    return path


def trust(monkeypatch, directory: Path) -> None:
    for attr in ("TRAIN", "TEST"):
        remote = getattr(svhn, attr)
        monkeypatch.setattr(svhn, attr, dataclasses.replace(remote, sha256=sha256_file(directory / remote.filename)))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    write_mat(tmp_path / "train_32x32.mat", svhn_x(3, 10), [10, 1, 5])
    write_mat(tmp_path / "test_32x32.mat", svhn_x(2, 100), [9, 10])
    trust(monkeypatch, tmp_path)
    return tmp_path


def norm(value: float) -> np.float32:
    return (np.float32(value) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def test_values_order_and_label_mapping(tiny):
    data = svhn.load_svhn(str(tiny), download=False)
    assert data.x.shape == (5, 32, 32, 3) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.y.tolist() == [0, 1, 5, 9, 0]  # train then test; label 10 is digit 0
    for record, red in enumerate([10, 11, 12, 100, 101]):
        assert data.x[record, 4, 6, 0] == pytest.approx(norm(red), rel=1e-6)
    assert data.x[0, 4, 6, 1] == pytest.approx(norm(50), rel=1e-6)
    assert data.x[0, 4, 6, 2] == pytest.approx(norm(250), rel=1e-6)
    assert data.x[0, 0, 1, 0] == pytest.approx(norm(255), rel=1e-6)  # X[row, column, channel, n]
    assert data.x[0, 1, 0, 0] == pytest.approx(norm(10), rel=1e-6)
    assert data.x.min() >= -1 and data.x.max() <= 1
    assert (DATASETS.get("svhn").num_classes, DATASETS.get("svhn").default_model) == (10, "resnet18")


def test_checksum_mismatch_is_refused_before_parsing(tiny, monkeypatch):
    monkeypatch.setattr(svhn, "TEST", dataclasses.replace(svhn.TEST, sha256="a" * 64))
    parsed = []
    monkeypatch.setattr(svhn, "read_mat", lambda path: parsed.append(path))
    with pytest.raises(ChecksumError, match="test_32x32.mat"):
        svhn.load_svhn(str(tiny), download=False)
    assert parsed == []


def test_truncated_file(tiny, monkeypatch):
    path = tiny / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:5000])
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="train_32x32.mat is truncated") as err:
        svhn.load_svhn(str(tiny), download=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("labels", [[0, 1, 5], [11, 1, 5]])
def test_labels_out_of_range(tiny, monkeypatch, labels):
    write_mat(tiny / "train_32x32.mat", svhn_x(3, 10), labels)
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="expected integers 1..10"):
        svhn.load_svhn(str(tiny), download=False)


def test_wrong_image_layout(tiny, monkeypatch):
    write_mat(tiny / "test_32x32.mat", np.zeros((2, 32, 32, 3), np.uint8), [1, 2])
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match=r"expected uint8 \(32, 32, 3, N\)"):
        svhn.load_svhn(str(tiny), download=False)


def test_label_count_mismatch(tiny, monkeypatch):
    write_mat(tiny / "test_32x32.mat", svhn_x(2, 0), [1, 2, 3])
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="2 images but 3 labels"):
        svhn.load_svhn(str(tiny), download=False)


def test_missing_variable(tiny, monkeypatch):
    savemat(tiny / "test_32x32.mat", {"X": svhn_x(2, 0)})
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="lacks the X or y variable"):
        svhn.load_svhn(str(tiny), download=False)


def test_missing_file_without_download(tiny):
    (tiny / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match="test_32x32.mat not found.*ufldl.stanford.edu") as err:
        svhn.load_svhn(str(tiny), download=False)
    assert "\n" not in str(err.value)
