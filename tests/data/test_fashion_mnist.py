"""Fashion-MNIST loader on tiny IDX gzip files written here, plus the real Debian copy when installed."""
import dataclasses
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tfprune_mia.data import DATASETS, fashion_mnist as fm, load_dataset
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file

TRAIN_LABELS = [3, 1, 4]
TEST_LABELS = [9, 0]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as out:
        out.write(payload)
    return path


def images(count: int, first: int) -> np.ndarray:
    """Image k is filled with first + k, except that pixel (0, 1) is 255 and pixel (1, 0) is 7."""
    x = np.repeat(np.arange(first, first + count, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    x[:, 0, 1], x[:, 1, 0] = 255, 7
    return x


def write_dataset(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_gz(directory / "train-images-idx3-ubyte.gz", idx_bytes(images(3, 10)))
    write_gz(directory / "train-labels-idx1-ubyte.gz", idx_bytes(np.array(TRAIN_LABELS)))
    write_gz(directory / "t10k-images-idx3-ubyte.gz", idx_bytes(images(2, 100)))
    write_gz(directory / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array(TEST_LABELS)))
    return directory


def trust(monkeypatch, directory: Path) -> None:
    """Point every expected digest at the tiny files, as if they were the canonical ones."""
    monkeypatch.setattr(fm, "REPACKED_SHA256", {})
    for attr in ("TRAIN_IMAGES", "TRAIN_LABELS", "TEST_IMAGES", "TEST_LABELS"):
        remote = getattr(fm, attr)
        monkeypatch.setattr(fm, attr, dataclasses.replace(remote, sha256=sha256_file(directory / remote.filename)))


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No real system or Keras directory may leak into a test."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fm, "KERAS_DIR", tmp_path / "no-keras")
    monkeypatch.setenv("TFPRUNE_MIA_DATA", str(tmp_path / "default"))
    return tmp_path


@pytest.fixture
def tiny(isolated, monkeypatch):
    directory = write_dataset(isolated / "fm")
    trust(monkeypatch, directory)
    return directory


def norm(value: float) -> np.float32:
    return (np.float32(value) / np.float32(255) - np.float32(0.2860)) / np.float32(0.3530)


def test_parses_values_order_and_shapes(tiny):
    data = fm.load_fashion_mnist(str(tiny), download=False)
    assert data.x.shape == (5, 28, 28, 1) and data.x.dtype == np.float32
    assert data.y.dtype == np.int64
    assert data.y.tolist() == TRAIN_LABELS + TEST_LABELS  # train then test
    for record, fill in enumerate([10, 11, 12, 100, 101]):
        assert data.x[record, 5, 5, 0] == pytest.approx(norm(fill), rel=1e-6)
    assert data.x[0, 0, 1, 0] == pytest.approx(norm(255), rel=1e-6)  # row-major: (row 0, column 1)
    assert data.x[0, 1, 0, 0] == pytest.approx(norm(7), rel=1e-6)


def test_registered_and_loadable_by_name(tiny):
    spec = DATASETS.get("fashion_mnist")
    assert (spec.num_classes, spec.default_model) == (10, "small_cnn")
    assert len(load_dataset("fashion_mnist", str(tiny), download=False)) == 5


def test_search_order_prefers_debian_then_keras_then_default(isolated, monkeypatch):
    debian, keras = write_dataset(isolated / "debian"), write_dataset(isolated / "keras")
    # Tell the directories apart by one label.
    write_gz(keras / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([2, 2])))
    trust(monkeypatch, debian)
    monkeypatch.setattr(fm, "TEST_LABELS", dataclasses.replace(fm.TEST_LABELS, sha256=None))
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    monkeypatch.setattr(fm, "KERAS_DIR", keras)
    assert fm.load_fashion_mnist(None, download=False).y[-1] == 0
    monkeypatch.setattr(fm, "DEBIAN_DIR", isolated / "absent")
    assert fm.load_fashion_mnist(None, download=False).y[-1] == 2


def test_default_data_dir_is_last_resort(isolated, monkeypatch):
    directory = write_dataset(isolated / "default" / "fashion_mnist")
    trust(monkeypatch, directory)
    assert len(fm.load_fashion_mnist(None, download=False)) == 5


def test_checksum_mismatch_is_refused_before_parsing(tiny, monkeypatch):
    monkeypatch.setattr(fm, "TRAIN_IMAGES", dataclasses.replace(fm.TRAIN_IMAGES, sha256="0" * 64))
    parsed = []
    monkeypatch.setattr(fm, "read_idx", lambda *args: parsed.append(args))
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        fm.load_fashion_mnist(str(tiny), download=False)
    assert parsed == []


def test_debian_repack_digest_is_accepted(tiny, monkeypatch):
    name = "train-images-idx3-ubyte.gz"
    monkeypatch.setattr(fm, "TRAIN_IMAGES", dataclasses.replace(fm.TRAIN_IMAGES, sha256="0" * 64))
    monkeypatch.setattr(fm, "REPACKED_SHA256", {name: sha256_file(tiny / name)})
    assert len(fm.load_fashion_mnist(str(tiny), download=False)) == 5


def test_truncated_payload_names_the_file(tiny, monkeypatch):
    name = "train-images-idx3-ubyte.gz"
    full = idx_bytes(images(3, 10))
    write_gz(tiny / name, full[:-100])
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match=f"{name}.*truncated.*download it again") as err:
        fm.load_fashion_mnist(str(tiny), download=False)
    assert "\n" not in str(err.value)


def test_truncated_gzip_stream(tiny, monkeypatch):
    name = "t10k-images-idx3-ubyte.gz"
    raw = (tiny / name).read_bytes()
    (tiny / name).write_bytes(raw[: len(raw) // 2])
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match=f"{name}.*truncated"):
        fm.load_fashion_mnist(str(tiny), download=False)


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x00\x08\x03" + struct.pack(">3I", 1, 28, 28) + bytes(784), "magic"),
    (idx_bytes(np.zeros((1, 28, 28)), type_code=0x0C) + bytes(784 * 3), "type 0x0c"),
    (idx_bytes(np.zeros((1, 27, 28))), r"dims \(1, 27, 28\)"),
    (idx_bytes(np.zeros((3, 28, 28))) + b"extra", "beyond"),
])
def test_bad_headers_and_lengths(tiny, monkeypatch, payload, message):
    write_gz(tiny / "train-images-idx3-ubyte.gz", payload)
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match=message):
        fm.load_fashion_mnist(str(tiny), download=False)


def test_label_out_of_range(tiny, monkeypatch):
    write_gz(tiny / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([9, 10])))
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="label 10"):
        fm.load_fashion_mnist(str(tiny), download=False)


def test_image_and_label_counts_must_agree(tiny, monkeypatch):
    write_gz(tiny / "train-labels-idx1-ubyte.gz", idx_bytes(np.array([1, 2])))
    trust(monkeypatch, tiny)
    with pytest.raises(DataError, match="3 images but .* 2 labels"):
        fm.load_fashion_mnist(str(tiny), download=False)


def test_missing_file_without_download(isolated):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz not found.*allow downloading") as err:
        fm.load_fashion_mnist(str(isolated / "empty"), download=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        fm.load_fashion_mnist(None, download=False)


def test_loads_the_debian_package():
    if not fm.DEBIAN_DIR.is_dir():
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({fm.DEBIAN_DIR} is absent)")
    data = fm.load_fashion_mnist(None, download=False)
    assert len(data) == 70_000
    assert data.input_shape == (28, 28, 1)
    assert np.bincount(data.y).tolist() == [7_000] * 10
    assert abs(float(data.x.mean())) < 0.01 and abs(float(data.x.std()) - 1) < 0.01
