"""CHMNIST loader on a tiny zip of 150x150 RGB .tif tiles laid out like the Kather 2016 archive."""
import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfprune_mia.data import DATASETS, chmnist
from tfprune_mia.errors import ChecksumError, DataError
from tfprune_mia.io import sha256_file

ROOT = "Kather_texture_2016_image_tiles_5000"


def tif(colour=None, array=None, size=(150, 150)) -> bytes:
    image = Image.fromarray(array) if array is not None else Image.new("RGB", size, colour)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def gradient() -> np.ndarray:
    rows, cols = np.mgrid[0:150, 0:150]
    return np.stack([rows * 255 // 149, cols * 255 // 149, (rows + cols) * 255 // 298], -1).astype(np.uint8)


def tiles() -> dict:
    """Member name -> tile bytes, deliberately out of order: the loader must sort by (class, file name)."""
    members = {}
    for label, cls in reversed(list(enumerate(chmnist.CLASS_NAMES))):
        members[f"{ROOT}/{cls}/"] = b""
        members[f"{ROOT}/{cls}/tile_b.tif"] = tif((label * 30, 1, 2))
        if label < 2:
            members[f"{ROOT}/{cls}/tile_a.tif"] = tif((label * 30, 100, 200))
    members[f"{ROOT}/03_COMPLEX/tile_c.tif"] = tif(array=gradient())
    return members


def write_zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def trusted_zip(monkeypatch, directory: Path, members: dict) -> Path:
    path = write_zip(directory / chmnist.KATHER_ZIP.filename, members)
    monkeypatch.setattr(chmnist, "KATHER_ZIP", dataclasses.replace(chmnist.KATHER_ZIP, sha256=sha256_file(path)))
    return path


def norm(rgb) -> np.ndarray:
    mean, std = np.asarray(chmnist.MEAN, np.float32), np.asarray(chmnist.STD, np.float32)
    return (np.asarray(rgb, np.float32) / np.float32(255) - mean) / std


def test_values_order_and_labels(tmp_path, monkeypatch):
    trusted_zip(monkeypatch, tmp_path, tiles())
    data = chmnist.load_chmnist(str(tmp_path), download=False)
    assert data.x.shape == (11, 32, 32, 3) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.y.tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7]
    # Sorted file names within a class: tile_a before tile_b.
    np.testing.assert_allclose(data.x[0, 3, 4], norm((0, 100, 200)), rtol=1e-6)
    np.testing.assert_allclose(data.x[1, 3, 4], norm((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(data.x[3, 31, 0], norm((30, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(data.x[10, 0, 0], norm((210, 1, 2)), rtol=1e-6)
    spec = DATASETS.get("chmnist")
    assert (spec.num_classes, spec.default_model) == (8, "resnet18")


def test_resize_is_pil_bilinear_with_antialiasing(tmp_path, monkeypatch):
    trusted_zip(monkeypatch, tmp_path, tiles())
    data = chmnist.load_chmnist(str(tmp_path), download=False)
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    expected = np.asarray(Image.fromarray(gradient()).resize((32, 32), bilinear), np.float32)
    np.testing.assert_allclose(data.x[5], norm(expected), rtol=1e-5, atol=1e-6)  # 03_COMPLEX/tile_c.tif
    # Antialiasing averages over the footprint; point sampling would give a different corner value.
    nearest = np.asarray(Image.fromarray(gradient()).resize((32, 32), Image.NEAREST), np.float32)
    assert not np.allclose(expected, nearest)


def test_checksum_mismatch_is_refused_before_reading(tmp_path, monkeypatch):
    trusted_zip(monkeypatch, tmp_path, tiles())
    monkeypatch.setattr(chmnist, "KATHER_ZIP", dataclasses.replace(chmnist.KATHER_ZIP, sha256="b" * 64))
    opened = []
    monkeypatch.setattr(chmnist, "read_tiles", lambda path: opened.append(path))
    with pytest.raises(ChecksumError, match="Kather_texture_2016_image_tiles_5000.zip"):
        chmnist.load_chmnist(str(tmp_path), download=False)
    assert opened == []


@pytest.mark.parametrize("name", ["../01_TUMOR/evil.tif", "/etc/01_TUMOR/evil.tif", f"{ROOT}/../../evil.tif"])
def test_unsafe_member_names_are_rejected(tmp_path, monkeypatch, name):
    members = tiles()
    members[name] = tif((0, 0, 0))
    trusted_zip(monkeypatch, tmp_path, members)
    with pytest.raises(DataError, match="unsafe member name"):
        chmnist.load_chmnist(str(tmp_path), download=False)


def test_truncated_zip(tmp_path, monkeypatch):
    path = write_zip(tmp_path / chmnist.KATHER_ZIP.filename, tiles())
    path.write_bytes(path.read_bytes()[:-200])
    monkeypatch.setattr(chmnist, "KATHER_ZIP", dataclasses.replace(chmnist.KATHER_ZIP, sha256=sha256_file(path)))
    with pytest.raises(DataError, match="truncated or not a valid zip") as err:
        chmnist.load_chmnist(str(tmp_path), download=False)
    assert "\n" not in str(err.value)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_tile(tmp_path, monkeypatch):
    members = tiles()
    members[f"{ROOT}/05_DEBRIS/tile_b.tif"] = b"II*\x00 not really a tiff"
    trusted_zip(monkeypatch, tmp_path, members)
    with pytest.raises(DataError, match="05_DEBRIS/tile_b.tif is not a readable image"):
        chmnist.load_chmnist(str(tmp_path), download=False)


def test_wrong_class_folders(tmp_path, monkeypatch):
    members = {k: v for k, v in tiles().items() if "08_EMPTY" not in k}
    trusted_zip(monkeypatch, tmp_path, members)
    with pytest.raises(DataError, match="class folders"):
        chmnist.load_chmnist(str(tmp_path), download=False)


def test_wrong_tile_size(tmp_path, monkeypatch):
    members = tiles()
    members[f"{ROOT}/02_STROMA/tile_a.tif"] = tif((1, 2, 3), size=(64, 64))
    trusted_zip(monkeypatch, tmp_path, members)
    with pytest.raises(DataError, match="is 64x64, expected 150x150"):
        chmnist.load_chmnist(str(tmp_path), download=False)


def test_missing_file_without_download(tmp_path):
    with pytest.raises(DataError, match="Kather_texture_2016_image_tiles_5000.zip not found.*zenodo") as err:
        chmnist.load_chmnist(str(tmp_path), download=False)
    assert "\n" not in str(err.value)
