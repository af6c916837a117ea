"""Canaries for auditing a privacy claim: m records, each trained on with probability 1/2, persisted beside the split.

The one-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023) needs records whose membership is a
fair, independent coin flip and whose influence on the model is as large as possible, so that an attack's
guesses measure the worst case the DP promise covers rather than an average record. Canaries are drawn (seeded)
from a pool of records the model does not otherwise see, then made atypical:

- `mislabel`: the record with a random wrong label (a memorised exception, the usual black-box canary);
- `noise`: uniform noise over the dataset's value range, with a random label (out of distribution);
- `invert`: the record reflected across the dataset's value range (low + high - x), with a random label
  (out of distribution, yet with the dataset's structure).

Which canaries are IN is the secret of the audit, so it is saved once (as the split is) and never redrawn.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np

from tfprune_mia import fs
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import read_npz, stable_hash, write_npz
from tfprune_mia.registry import Registry


@dataclasses.dataclass(frozen=True)
class CanaryKind:
    """How a drawn record becomes a canary: its training label, and its input (None: the record unchanged)."""

    description: str
    relabel: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
    transform: Optional[Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]] = None


def _wrong_label(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    # A shift in 1..C-1 is uniform over the other classes.
    return (labels + rng.integers(1, num_classes, size=len(labels))) % num_classes


def _any_label(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, num_classes, size=len(labels))


CANARY_KINDS: Registry[CanaryKind] = Registry("canary kind")
CANARY_KINDS.register("mislabel")(CanaryKind("the record with a random wrong label", _wrong_label))
CANARY_KINDS.register("noise")(CanaryKind(
    "uniform noise over the dataset's value range, random label", _any_label,
    lambda x, low, high, rng: rng.uniform(low, high, size=x.shape).astype(x.dtype)))
CANARY_KINDS.register("invert")(CanaryKind(
    "the record reflected across the dataset's value range, random label", _any_label,
    lambda x, low, high, rng: (low + high - x).astype(x.dtype)))


@dataclasses.dataclass(frozen=True)
class CanarySet:
    """m canaries: dataset record `indices`, the `labels` they are trained with, and the secret `included`
    coin flips (True: in the training set). `seed` also drives the inputs of out-of-distribution kinds."""

    indices: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    kind: str
    seed: int
    num_classes: int
    num_records: int

    def __post_init__(self):
        CANARY_KINDS.get(self.kind)
        m = len(self.indices)
        if not (self.indices.ndim == 1 and m and np.issubdtype(self.indices.dtype, np.integer)
                and self.labels.shape == (m,) and np.issubdtype(self.labels.dtype, np.integer)
                and self.included.shape == (m,) and self.included.dtype == bool):
            raise CheckpointError(f"a canary set needs equally long 1-d integer indices and labels and a boolean "
                                  f"inclusion vector, got {self.indices.shape}, {self.labels.shape}, "
                                  f"{self.included.shape} {self.included.dtype}; delete the canary file and re-run")
        if self.indices.min() < 0 or self.indices.max() >= self.num_records or len(np.unique(self.indices)) != m:
            raise CheckpointError(f"canary indices must be distinct records in [0, {self.num_records}); delete "
                                  "the canary file and re-run")
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise CheckpointError(f"canary labels must lie in [0, {self.num_classes}); delete the canary file "
                                  "and re-run")
        for name in ("indices", "labels", "included"):
            frozen = np.array(getattr(self, name), copy=True)
            frozen.setflags(write=False)  # the secret must not change after it was drawn
            object.__setattr__(self, name, frozen)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def in_indices(self) -> np.ndarray:
        return self.indices[self.included]

    def fingerprint(self) -> str:
        return stable_hash([self.kind, self.seed, self.num_classes, self.indices.tolist(), self.labels.tolist(),
                            self.included.tolist()], length=16)


def make_canaries(labels: np.ndarray, num_classes: int, count: int, kind: str = "mislabel", seed: int = 0,
                  pool: Optional[np.ndarray] = None) -> CanarySet:
    """Draw `count` canaries from `pool` (default: every record), make them `kind`, flip each one's coin.

    labels: the dataset's labels (all records); pool: record indices the audited model sees no other way,
    e.g. held-out records of the victim's half.
    """
    canary_kind = CANARY_KINDS.get(kind)
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if pool is None else np.unique(np.asarray(pool, dtype=np.int64))
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: canaries need at least 2 classes to be mislabelled")
    if len(pool) and (pool.min() < 0 or pool.max() >= len(labels)):
        raise ConfigError(f"the canary pool holds indices outside [0, {len(labels)}); pass record indices")
    if not 1 <= count <= len(pool):
        raise ConfigError(f"{count} canaries requested from a pool of {len(pool)} records; ask for between 1 "
                          f"and {len(pool)}")
    # Independent streams: changing the kind never changes which records are drawn or which are IN.
    draw, relabel, flip = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    indices = np.sort(draw.choice(pool, size=count, replace=False)).astype(np.int64)
    new_labels = canary_kind.relabel(labels[indices].astype(np.int64), num_classes, relabel).astype(np.int64)
    included = flip.random(count) < 0.5
    return CanarySet(indices, new_labels, included, kind, int(seed), int(num_classes), len(labels))


def canary_records(canaries: CanarySet, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """All m canaries as the model sees them (inputs, training labels), IN and OUT alike: what an audit scores."""
    if len(x) != canaries.num_records:
        raise ConfigError(f"the canaries were drawn from {canaries.num_records} records, the dataset has "
                          f"{len(x)}; use the canary file made for this dataset")
    transform = CANARY_KINDS.get(canaries.kind).transform
    inputs = x[canaries.indices]
    if transform is not None:
        # A fourth stream of the same seed: the inputs are a pure function of the saved set and the dataset.
        rng = np.random.default_rng(np.random.SeedSequence(canaries.seed).spawn(4)[3])
        inputs = transform(inputs, float(x.min()), float(x.max()), rng)
    return inputs, canaries.labels.copy()


def training_arrays(x: np.ndarray, y: np.ndarray, train_indices: np.ndarray,
                    canaries: CanarySet) -> Tuple[np.ndarray, np.ndarray]:
    """The training set `train_indices` of (x, y) plus the IN canaries with their canary inputs and labels."""
    train_indices = np.asarray(train_indices)
    clash = np.intersect1d(train_indices, canaries.indices)
    if clash.size:
        # A canary that is also an ordinary member is seen whatever its coin says: a blunted canary, and a sign
        # that the pool was chosen wrongly.
        raise ConfigError(f"{clash.size} canaries (e.g. record {clash[0]}) are also ordinary training records; "
                          "draw the canaries from records outside the training set (make_canaries(pool=...))")
    canary_x, canary_y = canary_records(canaries, x)
    return (np.concatenate([x[train_indices], canary_x[canaries.included]]),
            np.concatenate([y[train_indices], canary_y[canaries.included].astype(y.dtype)]))


def save_canaries(canaries: CanarySet, path: Path) -> None:
    write_npz(path, indices=canaries.indices, labels=canaries.labels, included=canaries.included,
              kind=np.array(canaries.kind), seed=np.array(canaries.seed),
              num_classes=np.array(canaries.num_classes), num_records=np.array(canaries.num_records))


def load_canaries(path: Path) -> CanarySet:
    data = read_npz(path)
    try:
        return CanarySet(data["indices"], data["labels"], data["included"], str(data["kind"]), int(data["seed"]),
                         int(data["num_classes"]), int(data["num_records"]))
    except KeyError as err:
        raise CheckpointError(f"{path} lacks {err}; it was written by an incompatible version: delete it") from None
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_or_make_canaries(path: Path, labels: np.ndarray, num_classes: int, count: int, kind: str = "mislabel",
                          seed: int = 0, pool: Optional[np.ndarray] = None) -> CanarySet:
    """The saved canaries if they match the request; otherwise drawn once and saved. A saved set is never
    redrawn: its inclusions are the audit's secret, and models trained with them depend on it."""
    path = fs.path(path)
    if path.exists():
        canaries = load_canaries(path)
        wanted = (len(labels), count, kind, int(seed))
        found = (canaries.num_records, len(canaries), canaries.kind, canaries.seed)
        if found != wanted:
            raise CheckpointError(f"{path} holds canaries for (records, count, kind, seed) = {found}, not {wanted}; "
                                  "use another run directory or delete it (and the models trained with it)")
        return canaries
    canaries = make_canaries(labels, num_classes, count, kind, seed, pool)
    save_canaries(canaries, path)
    return canaries
