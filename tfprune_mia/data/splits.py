"""Victim/shadow member and non-member index sets (Yuan & Zhang 2022), persisted once per (dataset, seed).

The dataset is halved into a victim half and a shadow half; each half is split 45/10/45 into train (members),
dev (early stopping) and test (non-members). Shadow i re-splits the shadow half with seed + i, so the shadows
are resamplings of one half, exactly as in the paper's code.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

import numpy as np
from sklearn.model_selection import train_test_split

from tfprune_mia import fs
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import read_npz, stable_hash, write_npz

TEST_FRACTION = 0.45
DEV_FRACTION_OF_POOL = 0.1818  # 0.55 * 0.1818 ~= 10% of the half
# Members (victim train) and non-members (victim test) may differ by this fraction of the larger set: the 45/55
# fractions balance them exactly only up to rounding, which at a few dozen records exceeds it.
BALANCE_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Part:
    """One model's split: members it trains on, dev set for early stopping, non-members held out."""

    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray


@dataclasses.dataclass(frozen=True)
class Split:
    num_records: int
    seed: int
    victim: Part
    shadows: List[Part]

    def part(self, role: str) -> Part:
        """`victim` or `shadow_<i>`."""
        if role == "victim":
            return self.victim
        if role.startswith("shadow_"):
            index = int(role.split("_", 1)[1])
            if 0 <= index < len(self.shadows):
                return self.shadows[index]
        raise ConfigError(f"unknown model role {role!r}; use 'victim' or shadow_0..shadow_{len(self.shadows) - 1}")

    def is_balanced(self) -> bool:
        """Whether the victim's members and non-members are (near-)equally many, so that the attacks' balanced
        accuracy and AUC compare across runs."""
        members, non_members = len(self.victim.train), len(self.victim.test)
        return abs(members - non_members) <= BALANCE_TOLERANCE * max(members, non_members)

    @property
    def roles(self) -> List[str]:
        return ["victim"] + [f"shadow_{i}" for i in range(len(self.shadows))]

    def fingerprint(self) -> str:
        arrays = [self.victim.train, self.victim.dev, self.victim.test]
        for shadow in self.shadows:
            arrays += [shadow.train, shadow.dev, shadow.test]
        return stable_hash([a.tolist() for a in arrays], length=16)

    def check_disjoint(self) -> None:
        """Privacy-evaluation integrity: victim and shadow data never overlap, members never meet non-members."""
        victim = np.concatenate([self.victim.train, self.victim.dev, self.victim.test])
        parts = [self.victim] + list(self.shadows)
        for name, part in zip(self.roles, parts):
            if (np.intersect1d(part.train, part.dev).size or np.intersect1d(part.train, part.test).size
                    or np.intersect1d(part.dev, part.test).size):
                raise CheckpointError(f"split for {name} has overlapping train/dev/test indices; "
                                      "delete the split file and re-run")
        for name, part in zip(self.roles[1:], self.shadows):
            shadow = np.concatenate([part.train, part.dev, part.test])
            if np.intersect1d(victim, shadow).size:
                raise CheckpointError(f"{name} shares records with the victim; delete the split file and re-run")
        if len(np.unique(victim)) != len(victim):
            raise CheckpointError("victim split repeats records; delete the split file and re-run")


def _split_half(indices: np.ndarray, seed: int) -> Part:
    pool, test = train_test_split(indices, test_size=TEST_FRACTION, random_state=seed)
    train, dev = train_test_split(pool, test_size=DEV_FRACTION_OF_POOL, random_state=seed)
    return Part(np.asarray(train, np.int64), np.asarray(dev, np.int64), np.asarray(test, np.int64))


def make_split(num_records: int, seed: int = 7, num_shadows: int = 5) -> Split:
    if num_shadows < 1:
        raise ConfigError(f"num_shadows={num_shadows}: the attack needs at least 1 shadow model")
    if num_records < 20:
        raise ConfigError(f"dataset has only {num_records} records; at least 20 are needed to split it")
    victim_half, shadow_half = train_test_split(np.arange(num_records), test_size=0.5, random_state=seed)
    victim = _split_half(victim_half, seed)
    shadows = [_split_half(shadow_half, seed + i) for i in range(num_shadows)]
    split = Split(num_records, seed, victim, shadows)
    split.check_disjoint()
    if not split.is_balanced():
        raise ConfigError(f"{num_records} records give the victim {len(victim.train)} members but "
                          f"{len(victim.test)} non-members, too unbalanced to measure membership inference; use "
                          "a larger subset (--max_samples=200 or more, or 0 for all records)")
    return split


def save_split(split: Split, path: Path) -> None:
    arrays = {"num_records": np.array(split.num_records), "seed": np.array(split.seed),
              "num_shadows": np.array(len(split.shadows))}
    for role, part in zip(split.roles, [split.victim] + list(split.shadows)):
        for field in ("train", "dev", "test"):
            arrays[f"{role}.{field}"] = getattr(part, field)
    write_npz(path, **arrays)


def load_split(path: Path) -> Split:
    data = read_npz(path)
    try:
        num_shadows = int(data["num_shadows"])
        parts = [Part(*(data[f"{role}.{f}"] for f in ("train", "dev", "test")))
                 for role in ["victim"] + [f"shadow_{i}" for i in range(num_shadows)]]
        split = Split(int(data["num_records"]), int(data["seed"]), parts[0], parts[1:])
    except KeyError as err:
        raise CheckpointError(f"{path} lacks {err}; it was written by an incompatible version: delete it") from None
    for role, part in zip(split.roles, [split.victim] + list(split.shadows)):
        for field in ("train", "dev", "test"):
            index = getattr(part, field)
            # A tampered index would otherwise select the wrong records or crash deep inside training.
            if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or not len(index) or (
                    index.min() < 0 or index.max() >= split.num_records):
                raise CheckpointError(f"{path}: {role}.{field} is not a non-empty list of record indices in "
                                      f"[0, {split.num_records}); the split file is corrupt: delete it and re-run")
    split.check_disjoint()
    return split


def load_or_make_split(path: Path, num_records: int, seed: int, num_shadows: int) -> Split:
    """The persisted split if it matches; a saved split with fewer shadows is extended, never rewritten."""
    path = fs.path(path)
    if path.exists():
        split = load_split(path)
        if split.num_records != num_records or split.seed != seed:
            raise CheckpointError(f"{path} was made for {split.num_records} records / seed {split.seed}, not "
                                  f"{num_records} / {seed}; use another run directory or delete it")
        if len(split.shadows) >= num_shadows:
            return Split(split.num_records, split.seed, split.victim, split.shadows[:num_shadows])
    split = make_split(num_records, seed, num_shadows)
    save_split(split, path)
    return split
