"""The tabular sets: Purchase100, Texas100 and Location, as binary feature vectors with 0-indexed labels.

Every accepted file stores labels 1-indexed; the loaders subtract 1 and then insist on 0..K-1. Inputs are
left as raw 0/1 floats (as the authors do). The CSVs are large (Texas' feature file is ~0.8 GB of text), so they are
parsed in line-aligned chunks by a vectorised integer parser, falling back to np.loadtxt for any chunk that
holds something other than unsigned integers.
"""
from __future__ import annotations

import dataclasses
import io
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import (Dataset, RemoteFile, default_data_dir, parse_tar_members, resolve_file,
                                   verify_checksum)
from tfprune_mia.errors import DataError

# No SHA-256 is published for any of these files (Shokri et al.'s tarballs, MemGuard's npz), hence None;
# the strict shape and label checks below are what catches a wrong or damaged file.
PURCHASE_TGZ = RemoteFile("dataset_purchase.tgz", "https://www.comp.nus.edu.sg/~reza/files/dataset_purchase.tgz",
                          None)
PURCHASE_CSV = RemoteFile("dataset_purchase", PURCHASE_TGZ.url, None)  # already extracted from the .tgz
TEXAS_TGZ = RemoteFile("dataset_texas.tgz", "https://www.comp.nus.edu.sg/~reza/files/dataset_texas.tgz", None)
TEXAS_NPZ = RemoteFile("data_complete.npz", TEXAS_TGZ.url, None)  # user-built from feats/labels
LOCATION_NPZ = RemoteFile("data_complete.npz",
                          "https://github.com/jjy1994/MemGuard/raw/master/data/location/data_complete.npz", None)
# Shokri's CSV, extracted by the user from this tarball.
LOCATION_CSV = RemoteFile("dataset_location",
                          "https://github.com/privacytrustlab/datasets/raw/master/dataset_location.tgz", None)

PURCHASE_MEMBER = "dataset_purchase"
TEXAS_FEATS_MEMBER = "texas/100/feats"
TEXAS_LABELS_MEMBER = "texas/100/labels"

# Chunks are cut at line ends; 8 MiB of text keeps the parser's temporaries near 150 MB.
CHUNK_BYTES = 8 << 20
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_COMMA, _NEWLINE = ord(","), ord("\n")


@dataclasses.dataclass(frozen=True)
class TabularSpec:
    name: str
    num_classes: int
    num_features: int


PURCHASE = TabularSpec("purchase100", 100, 600)
TEXAS = TabularSpec("texas100", 100, 6169)
LOCATION = TabularSpec("location", 30, 446)


# --- CSV parsing --------------------------------------------------------------------------------------------

def iter_line_chunks(stream: BinaryIO, chunk_bytes: Optional[int] = None) -> Iterator[bytes]:
    """Blocks of whole lines (each ending in a newline), so that no row is split between two chunks."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    carry = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        block = carry + block
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        if cut:
            yield block[:cut]
    if carry.strip():
        yield carry + b"\n"


def _drop_blank_lines(chunk: bytes) -> bytes:
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r", b"")
    if chunk.startswith(b"\n") or b"\n\n" in chunk:
        chunk = b"".join(line + b"\n" for line in chunk.split(b"\n") if line.strip())
    return chunk


def parse_uint_csv(chunk: bytes, source: str) -> Optional[np.ndarray]:
    """A (rows, cols) int64 matrix from comma-separated unsigned integers ending in a newline.

    Returns None when the chunk holds any other character (decimals, signs, spaces), leaving it to the
    general parser. Ragged rows and empty fields are errors here, as they would be in any parser.
    """
    u = np.frombuffer(chunk, dtype=np.uint8)
    is_digit = (u >= ord("0")) & (u <= ord("9"))
    is_sep = ~is_digit
    if not np.all(is_digit | (u == _COMMA) | (u == _NEWLINE)):
        return None
    sep_pos = np.flatnonzero(is_sep)
    field_len = np.diff(sep_pos, prepend=-1) - 1
    if field_len.min() == 0:
        raise DataError(f"{source} has an empty field; the file is truncated or corrupt: download it again")
    if field_len.max() >= len(_POW10):
        return None  # too long for int64: let the float parser deal with it
    # Build each field's value from its last digit backwards; fields are short (0/1 features, labels <= 3
    # digits), so this is a few gathers rather than a per-digit scan.
    values = (u[sep_pos - 1] - ord("0")).astype(np.int64)
    for place in range(1, int(field_len.max())):
        longer = np.flatnonzero(field_len > place)
        values[longer] += (u[sep_pos[longer] - 1 - place] - ord("0")).astype(np.int64) * _POW10[place]
    row_ends = np.flatnonzero(u[sep_pos] == _NEWLINE)
    row_len = np.diff(row_ends, prepend=-1)
    if row_len.min() != row_len.max():
        raise DataError(f"{source} has rows of {row_len.min()} and {row_len.max()} fields; the file is "
                        "truncated or corrupt: download it again")
    return values.reshape(len(row_ends), int(row_len[0]))


def parse_csv_chunk(chunk: bytes, source: str) -> np.ndarray:
    chunk = _drop_blank_lines(chunk)
    if not chunk:
        return np.empty((0, 0), np.int64)
    fast = parse_uint_csv(chunk, source)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return np.loadtxt(io.BytesIO(chunk), delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, UserWarning) as err:
        raise DataError(f"{source} is not a numeric CSV ({_first_line(err)}); the file is corrupt or another "
                        "format: download it again") from None


def read_csv(stream: BinaryIO, num_cols: int, source: str,
             split: Callable[[np.ndarray], Tuple[np.ndarray, ...]]) -> List[np.ndarray]:
    """Parse a CSV of exactly `num_cols` columns chunk by chunk; `split` turns each chunk's matrix into the
    arrays to keep (e.g. float32 features and int labels), so the whole text is never held as int64."""
    parts: List[List[np.ndarray]] = []
    for chunk in iter_line_chunks(stream):
        matrix = parse_csv_chunk(chunk, source)
        if matrix.size == 0:
            continue
        if matrix.shape[1] != num_cols:
            # A truncated last row arrives as a chunk of its own, so this also catches truncation.
            raise DataError(f"{source} has rows of {matrix.shape[1]} columns, expected {num_cols}; the file is "
                            "truncated or not the expected version of the dataset (wrong feature dimension): "
                            "download it again")
        parts.append(list(split(matrix)))
    if not parts:
        raise DataError(f"{source} holds no records; the file is empty or truncated: download it again")
    return [np.concatenate(column) for column in zip(*parts)]


def _label_first(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return matrix[:, 1:].astype(np.float32), matrix[:, 0].astype(np.float64)


def _features(matrix: np.ndarray) -> Tuple[np.ndarray]:
    return (matrix.astype(np.float32),)


def _labels(matrix: np.ndarray) -> Tuple[np.ndarray]:
    return (matrix[:, 0].astype(np.float64),)


def labels_from_one_indexed(raw: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """0-indexed int64 labels from 1-indexed ones, insisting on integers in 1..num_classes."""
    raw = np.asarray(raw).reshape(-1)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise DataError(f"{source} has non-integer labels; the file is corrupt: download it again")
    labels = raw.astype(np.int64) - 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: labels span [{labels.min() + 1}, {labels.max() + 1}], expected 1..{num_classes} "
                        "(1-indexed); the file is corrupt or another dataset: download it again")
    return labels


# --- containers ---------------------------------------------------------------------------------------------

def read_npz_xy(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """x and y from an npz, never unpickling (an npz of object arrays is refused)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path} is not a readable npz ({_first_line(err)}); rebuild or re-download it") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not an npz with 'x' and 'y'; rebuild it with "
                        "np.savez(path, x=features, y=labels)")
    with data:
        if not {"x", "y"} <= set(data.files):
            raise DataError(f"{path} holds arrays {sorted(data.files)}, not 'x' and 'y'; rebuild it with "
                            "np.savez(path, x=features, y=labels)")
        try:
            return data["x"], data["y"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise DataError(f"{path} holds unreadable or pickled arrays ({_first_line(err)}); rebuild it "
                            "from plain numeric arrays") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def checked_features(x: np.ndarray, spec: TabularSpec, source: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] != spec.num_features:
        raise DataError(f"{source}: features have shape {x.shape}, expected (N, {spec.num_features}); it is "
                        f"not the expected version of {spec.name} (wrong feature dimension)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{source}: features have dtype {x.dtype}, expected numbers; rebuild the file")
    return x.astype(np.float32, copy=False)


# --- per-format readers -------------------------------------------------------------------------------------

def _label_first_csv(spec: TabularSpec) -> Callable[[BinaryIO, str], Tuple[np.ndarray, np.ndarray]]:
    def parse(stream: BinaryIO, source: str) -> Tuple[np.ndarray, np.ndarray]:
        x, raw = read_csv(stream, 1 + spec.num_features, source, _label_first)
        return x, labels_from_one_indexed(raw, spec.num_classes, source)
    return parse


def read_label_first_csv_file(path: Path, spec: TabularSpec) -> Tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as stream:
        return _label_first_csv(spec)(stream, str(path))


def read_npz_dataset(path: Path, spec: TabularSpec) -> Tuple[np.ndarray, np.ndarray]:
    x, y = read_npz_xy(path)
    x = checked_features(x, spec, str(path))
    y = labels_from_one_indexed(y, spec.num_classes, str(path))
    if len(x) != len(y):
        raise DataError(f"{path} has {len(x)} feature rows but {len(y)} labels; rebuild the file")
    return x, y


def read_purchase_tgz(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    return parse_tar_members(path, {PURCHASE_MEMBER: _label_first_csv(PURCHASE)})[PURCHASE_MEMBER]


def read_texas_tgz(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    def feats(stream: BinaryIO, source: str) -> np.ndarray:
        return read_csv(stream, TEXAS.num_features, source, _features)[0]

    def labels(stream: BinaryIO, source: str) -> np.ndarray:
        return labels_from_one_indexed(read_csv(stream, 1, source, _labels)[0], TEXAS.num_classes, source)

    parsed = parse_tar_members(path, {TEXAS_FEATS_MEMBER: feats, TEXAS_LABELS_MEMBER: labels})
    x, y = parsed[TEXAS_FEATS_MEMBER], parsed[TEXAS_LABELS_MEMBER]
    if len(x) != len(y):
        raise DataError(f"{path}: {TEXAS_FEATS_MEMBER} has {len(x)} rows but {TEXAS_LABELS_MEMBER} has "
                        f"{len(y)}; the archive is corrupt: download it again")
    return x, y


# --- file resolution ----------------------------------------------------------------------------------------

Reader = Callable[[Path], Tuple[np.ndarray, np.ndarray]]


def load_first_available(spec: TabularSpec, data_dir: Optional[str], download: bool,
                         candidates: Sequence[Tuple[RemoteFile, Reader]], primary: RemoteFile) -> Dataset:
    """Read the first accepted file present in the directory; otherwise fetch `primary` (its reader is the
    candidate with the same file name)."""
    directory = Path(data_dir) if data_dir is not None else default_data_dir(spec.name)
    for remote, reader in candidates:
        path = directory / remote.filename
        if path.is_file():
            verify_checksum(spec.name, path, remote.sha256)
            return _dataset(spec, *reader(path))
    if not download:
        names = " or ".join(remote.filename for remote, _ in candidates)
        raise DataError(f"{spec.name}: none of {names} found in {directory}; download {primary.url} into "
                        f"{directory} (or allow downloading)")
    path = resolve_file(spec.name, primary, directory, download=True)
    reader = next(reader for remote, reader in candidates if remote.filename == primary.filename)
    return _dataset(spec, *reader(path))


def _dataset(spec: TabularSpec, x: np.ndarray, y: np.ndarray) -> Dataset:
    checked_features(x, spec, spec.name)
    return Dataset(spec.name, x, y, spec.num_classes)


@register(PURCHASE.name, num_classes=PURCHASE.num_classes, default_model="columnfc",
          description="Purchase100 (Shokri et al.): 197,324 shoppers x 600 binary features, 100 classes")
def load_purchase100(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    candidates = [(PURCHASE_CSV, lambda p: read_label_first_csv_file(p, PURCHASE)),
                  (PURCHASE_TGZ, read_purchase_tgz)]
    return load_first_available(PURCHASE, data_dir, download, candidates, PURCHASE_TGZ)


@register(TEXAS.name, num_classes=TEXAS.num_classes, default_model="columnfc",
          description="Texas100 (Shokri et al.): 67,330 hospital stays x 6,169 binary features, 100 classes")
def load_texas100(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    candidates = [(TEXAS_NPZ, lambda p: read_npz_dataset(p, TEXAS)), (TEXAS_TGZ, read_texas_tgz)]
    return load_first_available(TEXAS, data_dir, download, candidates, TEXAS_TGZ)


@register(LOCATION.name, num_classes=LOCATION.num_classes, default_model="columnfc",
          description="Location (Foursquare, via MemGuard): 5,010 users x 446 binary features, 30 classes")
def load_location(data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    candidates = [(LOCATION_NPZ, lambda p: read_npz_dataset(p, LOCATION)),
                  (LOCATION_CSV, lambda p: read_label_first_csv_file(p, LOCATION))]
    return load_first_available(LOCATION, data_dir, download, candidates, LOCATION_NPZ)
