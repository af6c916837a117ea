"""CIFAR loaders on tiny tarballs of Python-2-style pickled batches, as the official tarballs hold them."""
import dataclasses
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from native_files import write_tar_gz

from tfprune_mia.data import DATASETS, cifar
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes, the form cPickle gave the official batches (read back with
    encoding='bytes' they become bytes again)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def batch_images(count: int, first: int) -> np.ndarray:
    """(count, 3072) CHW-flattened rows: image k is filled with first + k in R, 2 in G, 200 in B, and its
    R value at (row 0, column 1) is 255."""
    chw = np.empty((count, 3, 32, 32), np.uint8)
    chw[:, 0] = (first + np.arange(count, dtype=np.uint8))[:, None, None]
    chw[:, 1], chw[:, 2] = 2, 200
    chw[:, 0, 0, 1] = 255
    return chw.reshape(count, -1)


def cifar10_batch(labels, first, data=None) -> bytes:
    data = batch_images(len(labels), first) if data is None else data
    return py2_pickle({b"batch_label": b"training batch", b"labels": list(labels), b"data": data,
                       b"filenames": [b"img%d.png" % i for i in range(len(labels))]})


def cifar10_members(**replace) -> dict:
    prefix = "cifar-10-batches-py/"
    members = {prefix + "test_batch": cifar10_batch([9, 8], 100),  # archive order differs from record order
               prefix + "batches.meta": py2_pickle({b"label_names": [b"airplane"]}),
               prefix + "readme.html": b"<html></html>"}
    for i in (5, 3, 1, 2, 4):
        members[prefix + f"data_batch_{i}"] = cifar10_batch([i, i - 1], 10 * i)
    members.update({prefix + name: payload for name, payload in replace.items()})
    return members


def trusted_tar(monkeypatch, directory: Path, attr: str, members: dict) -> Path:
    remote = getattr(cifar, attr)
    path = write_tar_gz(directory / remote.filename, members)
    monkeypatch.setattr(cifar, attr, dataclasses.replace(remote, sha256=sha256_file(path)))
    return path


def norm(value: float, channel: int) -> np.float32:
    return (np.float32(value) / np.float32(255) - np.float32(cifar.MEAN[channel])) / np.float32(cifar.STD[channel])


def test_cifar10_values_order_and_layout(tmp_path, monkeypatch):
    trusted_tar(monkeypatch, tmp_path, "CIFAR10", cifar10_members())
    data = cifar.load_cifar10(str(tmp_path), download=False)
    assert data.x.shape == (12, 32, 32, 3) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.y.tolist() == [1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 9, 8]  # data_batch_1..5, then test_batch
    red = [10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 100, 101]
    for record, value in enumerate(red):
        assert data.x[record, 7, 9, 0] == pytest.approx(norm(value, 0), rel=1e-6)
    assert data.x[0, 7, 9, 1] == pytest.approx(norm(2, 1), rel=1e-6)
    assert data.x[0, 7, 9, 2] == pytest.approx(norm(200, 2), rel=1e-6)
    assert data.x[0, 0, 1, 0] == pytest.approx(norm(255, 0), rel=1e-6)  # CHW row-major -> NHWC (h=0, w=1)
    assert data.x[0, 1, 0, 0] == pytest.approx(norm(10, 0), rel=1e-6)


def test_cifar100_uses_fine_labels_and_cifar10_statistics(tmp_path, monkeypatch):
    def batch(fine, first):
        return py2_pickle({b"data": batch_images(len(fine), first), b"fine_labels": fine,
                           b"coarse_labels": [f // 5 for f in fine], b"filenames": [b"x"] * len(fine)})

    trusted_tar(monkeypatch, tmp_path, "CIFAR100", {"cifar-100-python/test": batch([99, 0], 100),
                                                    "cifar-100-python/train": batch([42, 7, 63], 10),
                                                    "cifar-100-python/meta": py2_pickle({b"fine_label_names": []})})
    data = cifar.load_cifar100(str(tmp_path), download=False)
    assert data.y.tolist() == [42, 7, 63, 99, 0]
    assert data.x[3, 5, 5, 0] == pytest.approx(norm(100, 0), rel=1e-6)
    assert DATASETS.get("cifar100").num_classes == 100
    assert DATASETS.get("cifar10").default_model == "resnet18"


def test_checksum_mismatch_is_refused_before_the_tarball_is_opened(tmp_path, monkeypatch):
    trusted_tar(monkeypatch, tmp_path, "CIFAR10", cifar10_members())
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, sha256="f" * 64))
    opened = []
    monkeypatch.setattr(cifar, "parse_tar_members", lambda *args: opened.append(args))
    with pytest.raises(ChecksumError, match="cifar-10-python.tar.gz"):
        cifar.load_cifar10(str(tmp_path), download=False)
    assert opened == []


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_even_with_a_matching_checksum(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = py2_pickle({b"data": Exploit(marker)})
    trusted_tar(monkeypatch, tmp_path, "CIFAR10", cifar10_members(data_batch_1=evil))
    with pytest.raises(DataError, match="refused global (posix|os|nt).system"):
        cifar.load_cifar10(str(tmp_path), download=False)
    assert not marker.exists()


def test_builtins_eval_is_refused():
    evil = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(DataError, match="refused global builtins.eval"):
        cifar.unpickle_batch(evil, "evil")


@pytest.mark.parametrize("replacement, message", [
    ({"data_batch_2": cifar10_batch([1, 10], 0)}, r"labels span \[1, 10\]"),
    ({"data_batch_3": cifar10_batch([1, 2], 0, np.zeros((2, 3071), np.uint8))}, "expected uint8"),
    ({"data_batch_4": cifar10_batch([1, 2, 3], 0, batch_images(2, 0))}, "2 images but 3 labels"),
    ({"test_batch": b"\x80\x02}q\x00(U\x04data"}, "corrupt pickle"),
    ({"data_batch_5": py2_pickle([1, 2, 3])}, "not a CIFAR batch dict"),
])
def test_corrupt_batches(tmp_path, monkeypatch, replacement, message):
    trusted_tar(monkeypatch, tmp_path, "CIFAR10", cifar10_members(**replacement))
    with pytest.raises(DataError, match=message) as err:
        cifar.load_cifar10(str(tmp_path), download=False)
    assert "\n" not in str(err.value)


def test_missing_member(tmp_path, monkeypatch):
    members = cifar10_members()
    del members["cifar-10-batches-py/data_batch_3"]
    trusted_tar(monkeypatch, tmp_path, "CIFAR10", members)
    with pytest.raises(DataError, match="lacks the member cifar-10-batches-py/data_batch_3"):
        cifar.load_cifar10(str(tmp_path), download=False)


def test_truncated_tarball(tmp_path, monkeypatch):
    path = write_tar_gz(tmp_path / cifar.CIFAR10.filename, cifar10_members())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, sha256=sha256_file(path)))
    with pytest.raises(DataError, match="truncated or not a valid tar.gz"):
        cifar.load_cifar10(str(tmp_path), download=False)


def test_missing_file_without_download(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"cifar-100-python.tar.gz not found.*cs.toronto.edu") as err:
        cifar.load_cifar100(str(tmp_path), download=False)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("TFPRUNE_MIA_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path / "cifar10" / "cifar-10-python.tar.gz")):
        cifar.load_cifar10(None, download=False)
