"""CHMNIST: Kather et al. 2016 colorectal histology tiles (5,000 150x150 RGB .tif tiles, 8 tissue classes).

Records are ordered as torchvision's ImageFolder orders the unpacked folder (sorted class folder, then
sorted file name), since the victim/shadow split indexes records by position. The zip is read in memory;
nothing is extracted.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import Dataset, RemoteFile, default_data_dir, resolve_file
from tfprune_mia.errors import DataError

NAME = "chmnist"
CLASS_NAMES = ("01_TUMOR", "02_STROMA", "03_COMPLEX", "04_LYMPHO", "05_DEBRIS", "06_MUCOSA", "07_ADIPOSE",
               "08_EMPTY")
TILE_SIZE = (150, 150)
OUTPUT_SIZE = (32, 32)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".tif", ".tiff")
# An uncompressed 150x150 RGB tile is ~68 KB; anything far larger is not a tile (or is a zip bomb).
MAX_MEMBER_BYTES = 16 << 20

# SHA-256 from tensorflow/datasets' url_checksums/colorectal_histology.txt (same zip, same URL).
KATHER_ZIP = RemoteFile(
    "Kather_texture_2016_image_tiles_5000.zip",
    "https://zenodo.org/record/53169/files/Kather_texture_2016_image_tiles_5000.zip?download=1",
    "936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32")


def safe_member_path(name: str, source: Path) -> PurePosixPath:
    """A member's path, refusing absolute and parent-relative names even though nothing is extracted."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{source} contains the unsafe member name {name!r}; the zip is not the official "
                        "tile set: delete it and download it again")
    return path


def list_tiles(names: List[str], source: Path) -> List[Tuple[int, str]]:
    """(label, member name) of every tile, in ImageFolder order: sorted class folder, then sorted file name."""
    tiles: Dict[str, List[Tuple[str, str]]] = {}
    roots = set()
    for name in names:
        path = safe_member_path(name, source)
        if name.endswith("/") or path.parts[:1] == ("__MACOSX",) or path.name.startswith("._"):
            continue  # directories and macOS resource forks are not records
        if path.suffix.lower() not in IMAGE_SUFFIXES or len(path.parts) < 2:
            continue
        roots.add(path.parent.parent)
        tiles.setdefault(path.parent.name, []).append((path.name, name))
    if len(roots) > 1:
        raise DataError(f"{source} has tiles under several roots ({', '.join(sorted(map(str, roots)))}); "
                        "it is not the official tile set: delete it and download it again")
    if tuple(sorted(tiles)) != CLASS_NAMES:
        raise DataError(f"{source} has class folders {sorted(tiles)}, expected {list(CLASS_NAMES)}; "
                        "it is not the Kather 2016 5,000-tile set: download it again")
    return [(label, member) for label, cls in enumerate(CLASS_NAMES) for _, member in sorted(tiles[cls])]


def decode_tile(raw: bytes, source: str) -> np.ndarray:
    """A tile as float32 HWC in [0, 1], resized like torchvision's Resize (PIL bilinear, antialiased)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{source} is not a readable image ({err}); the zip is corrupt: "
                        "delete it and download it again") from None
    if rgb.size != TILE_SIZE:
        raise DataError(f"{source} is {rgb.size[0]}x{rgb.size[1]}, expected {TILE_SIZE[0]}x{TILE_SIZE[1]}; "
                        "it is not the 5,000-tile set (the 'larger images' set differs): download the tiles zip")
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    resized = rgb.resize(OUTPUT_SIZE, bilinear)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def read_tiles(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            order = list_tiles(list(infos), path)
            images = np.empty((len(order),) + OUTPUT_SIZE + (3,), np.float32)
            for i, (_, member) in enumerate(order):
                if infos[member].file_size > MAX_MEMBER_BYTES:
                    raise DataError(f"{path}:{member} unpacks to {infos[member].file_size} bytes, far more than "
                                    "a tile; the zip is not the official one: download it again")
                images[i] = decode_tile(archive.read(member), f"{path}:{member}")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is truncated or not a valid zip ({err}); "
                        "delete it and download it again") from None
    return images, np.array([label for label, _ in order], np.int64)


def normalise(images: np.ndarray) -> np.ndarray:
    return (images - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


@register(NAME, num_classes=len(CLASS_NAMES), default_model="resnet18",
          description="Kather 2016 colorectal histology: 5,000 tiles in 8 tissue classes, resized to 32x32")
def load_chmnist(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    directory = Path(data_dir) if data_dir is not None else default_data_dir(NAME)
    path = resolve_file(NAME, KATHER_ZIP, directory, download)
    images, labels = read_tiles(path)
    return Dataset(NAME, normalise(images), labels, len(CLASS_NAMES))
