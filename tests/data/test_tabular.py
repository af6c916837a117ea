"""Purchase100, Texas100 and Location loaders on tiny files in Shokri's .tgz/CSV and MemGuard's npz formats."""
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from native_files import write_tar_gz

from tfprune_mia.data import DATASETS, tabular
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file


def features(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (rows, cols))


def csv(rows: np.ndarray) -> bytes:
    return "".join(",".join(map(str, row)) + "\n" for row in rows).encode()


def label_first(labels, x) -> bytes:
    return csv(np.column_stack([labels, x]))


def trust(monkeypatch, attr: str, path: Path) -> None:
    """Give a file an expected digest (none is published for the real ones) so verification runs."""
    monkeypatch.setattr(tabular, attr, dataclasses.replace(getattr(tabular, attr), sha256=sha256_file(path)))


# --- Purchase100 ---------------------------------------------------------------------------------------------

PURCHASE_LABELS = [1, 100, 42, 7]


@pytest.fixture
def purchase_x():
    return features(4, 600, seed=0)


@pytest.fixture
def purchase_tgz(tmp_path, purchase_x, monkeypatch):
    path = write_tar_gz(tmp_path / "dataset_purchase.tgz", {"dataset_purchase": label_first(PURCHASE_LABELS, purchase_x)})
    trust(monkeypatch, "PURCHASE_TGZ", path)
    return path


def test_purchase_from_tgz(purchase_tgz, purchase_x):
    data = tabular.load_purchase100(str(purchase_tgz.parent), download=False)
    assert data.x.shape == (4, 600) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.y.tolist() == [0, 99, 41, 6]  # 1-indexed column 0, minus 1
    np.testing.assert_array_equal(data.x, purchase_x.astype(np.float32))  # raw 0/1, not normalised
    spec = DATASETS.get("purchase100")
    assert (spec.num_classes, spec.default_model) == (100, "columnfc")


def test_purchase_from_extracted_csv(tmp_path, purchase_x):
    (tmp_path / "dataset_purchase").write_bytes(label_first(PURCHASE_LABELS, purchase_x))
    data = tabular.load_purchase100(str(tmp_path), download=False)
    assert data.y.tolist() == [0, 99, 41, 6]
    np.testing.assert_array_equal(data.x, purchase_x)


def test_purchase_checksum_mismatch_is_refused_before_parsing(purchase_tgz, monkeypatch):
    monkeypatch.setattr(tabular, "PURCHASE_TGZ", dataclasses.replace(tabular.PURCHASE_TGZ, sha256="c" * 64))
    opened = []
    monkeypatch.setattr(tabular, "read_purchase_tgz", lambda path: opened.append(path))
    with pytest.raises(ChecksumError, match="dataset_purchase.tgz"):
        tabular.load_purchase100(str(purchase_tgz.parent), download=False)
    assert opened == []


@pytest.mark.parametrize("labels, message", [([0, 1, 2, 3], r"span \[0, 3\], expected 1..100"),
                                             ([1, 2, 101, 3], r"span \[1, 101\]")])
def test_purchase_labels_out_of_range(tmp_path, purchase_x, labels, message):
    write_tar_gz(tmp_path / "dataset_purchase.tgz", {"dataset_purchase": label_first(labels, purchase_x)})
    with pytest.raises(DataError, match=message):
        tabular.load_purchase100(str(tmp_path), download=False)


def test_purchase_wrong_feature_dimension(tmp_path):
    write_tar_gz(tmp_path / "dataset_purchase.tgz", {"dataset_purchase": label_first([1, 2], features(2, 599, 1))})
    with pytest.raises(DataError, match="rows of 600 columns, expected 601") as err:
        tabular.load_purchase100(str(tmp_path), download=False)
    assert "wrong feature dimension" in str(err.value)


def test_purchase_truncated_tgz(purchase_tgz, monkeypatch):
    purchase_tgz.write_bytes(purchase_tgz.read_bytes()[: purchase_tgz.stat().st_size // 2])
    trust(monkeypatch, "PURCHASE_TGZ", purchase_tgz)
    with pytest.raises(DataError, match="truncated or not a valid tar.gz/.tgz") as err:
        tabular.load_purchase100(str(purchase_tgz.parent), download=False)
    assert "\n" not in str(err.value)


def test_purchase_truncated_last_row(tmp_path, purchase_x):
    text = label_first(PURCHASE_LABELS, purchase_x)
    (tmp_path / "dataset_purchase").write_bytes(text[:-301])
    with pytest.raises(DataError, match="rows of 451 columns, expected 601; the file is truncated"):
        tabular.load_purchase100(str(tmp_path), download=False)


def test_purchase_member_missing(tmp_path, purchase_x):
    write_tar_gz(tmp_path / "dataset_purchase.tgz", {"purchase/other": b"1,0\n"})
    with pytest.raises(DataError, match="lacks the member dataset_purchase"):
        tabular.load_purchase100(str(tmp_path), download=False)


def test_missing_files_without_download(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="none of dataset_purchase or dataset_purchase.tgz found") as err:
        tabular.load_purchase100(str(tmp_path), download=False)
    assert "comp.nus.edu.sg" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("TFPRUNE_MIA_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path / "texas100")):
        tabular.load_texas100(None, download=False)
    with pytest.raises(DataError, match="MemGuard"):
        tabular.load_location(None, download=False)


# --- Texas100 ------------------------------------------------------------------------------------------------

@pytest.fixture
def texas_x():
    return features(3, 6169, seed=2)


def test_texas_from_tgz(tmp_path, texas_x, monkeypatch):
    # Labels before features in the archive: members are matched by name, not position.
    path = write_tar_gz(tmp_path / "dataset_texas.tgz", {"texas/100/labels": b"5\n100\n1\n",
                                                      "texas/100/feats": csv(texas_x)})
    trust(monkeypatch, "TEXAS_TGZ", path)
    data = tabular.load_texas100(str(tmp_path), download=False)
    assert data.y.tolist() == [4, 99, 0]
    assert data.x.shape == (3, 6169)
    np.testing.assert_array_equal(data.x, texas_x)
    assert DATASETS.get("texas100").num_classes == 100


def test_texas_from_npz(tmp_path, texas_x):
    np.savez(tmp_path / "data_complete.npz", x=texas_x.astype(np.float32), y=np.array([3, 2, 1]))
    data = tabular.load_texas100(str(tmp_path), download=False)
    assert data.y.tolist() == [2, 1, 0]
    np.testing.assert_array_equal(data.x, texas_x)


def test_texas_row_count_mismatch(tmp_path, texas_x):
    write_tar_gz(tmp_path / "dataset_texas.tgz", {"texas/100/feats": csv(texas_x), "texas/100/labels": b"5\n6\n"})
    with pytest.raises(DataError, match="3 rows but texas/100/labels has 2"):
        tabular.load_texas100(str(tmp_path), download=False)


def test_texas_wrong_feature_dimension(tmp_path):
    np.savez(tmp_path / "data_complete.npz", x=np.zeros((2, 6168)), y=np.array([1, 2]))
    with pytest.raises(DataError, match=r"shape \(2, 6168\), expected \(N, 6169\)"):
        tabular.load_texas100(str(tmp_path), download=False)


# --- Location ------------------------------------------------------------------------------------------------

@pytest.fixture
def location_x():
    return features(5, 446, seed=3)


def test_location_from_npz(tmp_path, location_x, monkeypatch):
    np.savez(tmp_path / "data_complete.npz", x=location_x, y=np.array([[1], [30], [2], [2], [17]]))
    trust(monkeypatch, "LOCATION_NPZ", tmp_path / "data_complete.npz")
    data = tabular.load_location(str(tmp_path), download=False)
    assert data.y.tolist() == [0, 29, 1, 1, 16]
    assert data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x, location_x)
    spec = DATASETS.get("location")
    assert (spec.num_classes, spec.default_model) == (30, "columnfc")


def test_location_from_shokri_csv(tmp_path, location_x):
    (tmp_path / "dataset_location").write_bytes(label_first([30, 1, 2, 3, 4], location_x))
    data = tabular.load_location(str(tmp_path), download=False)
    assert data.y.tolist() == [29, 0, 1, 2, 3]
    np.testing.assert_array_equal(data.x, location_x)


def test_location_npz_checksum_mismatch(tmp_path, location_x, monkeypatch):
    np.savez(tmp_path / "data_complete.npz", x=location_x, y=np.arange(1, 6))
    monkeypatch.setattr(tabular, "LOCATION_NPZ", dataclasses.replace(tabular.LOCATION_NPZ, sha256="d" * 64))
    with pytest.raises(ChecksumError):
        tabular.load_location(str(tmp_path), download=False)


def test_location_label_out_of_range(tmp_path, location_x):
    np.savez(tmp_path / "data_complete.npz", x=location_x, y=np.array([1, 2, 31, 4, 5]))
    with pytest.raises(DataError, match=r"span \[1, 31\], expected 1..30"):
        tabular.load_location(str(tmp_path), download=False)


def test_location_non_integer_labels(tmp_path, location_x):
    np.savez(tmp_path / "data_complete.npz", x=location_x, y=np.array([1, 2, 2.5, 4, 5]))
    with pytest.raises(DataError, match="non-integer labels"):
        tabular.load_location(str(tmp_path), download=False)


def test_npz_with_pickled_arrays_is_refused(tmp_path, location_x):
    y = np.array([1, "two", 3, 4, 5], dtype=object)
    np.savez(tmp_path / "data_complete.npz", x=location_x, y=y)
    with pytest.raises(DataError, match="unreadable or pickled arrays"):
        tabular.load_location(str(tmp_path), download=False)


@pytest.mark.parametrize("content, message", [(b"PK\x03\x04 broken", "not a readable npz"),
                                              (None, "not 'x' and 'y'")])
def test_corrupt_npz(tmp_path, location_x, content, message):
    path = tmp_path / "data_complete.npz"
    if content is None:
        np.savez(path, features=location_x, labels=np.arange(5))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        tabular.load_location(str(tmp_path), download=False)


# --- the CSV parser ------------------------------------------------------------------------------------------

def parse(text: bytes, cols: int, chunk_bytes=None, monkeypatch=None):
    if chunk_bytes and monkeypatch:
        monkeypatch.setattr(tabular, "CHUNK_BYTES", chunk_bytes)
    return tabular.read_csv(io.BytesIO(text), cols, "test.csv", tabular._label_first)


def test_csv_rows_survive_tiny_chunks(monkeypatch):
    rows = np.column_stack([np.arange(1, 51), features(50, 20, seed=4)])
    x, y = parse(csv(rows), 21, chunk_bytes=7, monkeypatch=monkeypatch)
    np.testing.assert_array_equal(y, np.arange(1, 51))
    np.testing.assert_array_equal(x, rows[:, 1:])


def test_csv_multi_digit_values_crlf_and_blank_lines():
    x, y = parse(b"123,0,45\r\n\r\n7,1,6789\r\n\n", 3)
    assert y.tolist() == [123, 7]
    assert x.tolist() == [[0, 45], [1, 6789]]


def test_csv_decimals_fall_back_to_the_general_parser():
    x, y = parse(b"3.0,0.0,1.0\n4,1,0.5\n", 3)
    assert y.tolist() == [3, 4]
    assert x.tolist() == [[0, 1], [1, 0.5]]


@pytest.mark.parametrize("text, message", [(b"1,0,1\n2,0\n", "rows of 2 and 3 fields"),
                                           (b"1,,1\n", "empty field"),
                                           (b"1,a,1\n", "not a numeric CSV"),
                                           (b"\n\n", "holds no records")])
def test_csv_malformed(text, message):
    with pytest.raises(DataError, match=message):
        parse(text, 3)
