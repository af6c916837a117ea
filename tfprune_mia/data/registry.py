"""Dataset registry: one loader per dataset, each returning a normalised `Dataset` in canonical order.

A loader is `load(data_dir: Optional[str], download: bool) -> Dataset`; `data_dir=None` means the
dataset's default location. Each dataset also names the model the paper (or the demo) pairs it with.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

from tfprune_mia.data.base import Dataset
from tfprune_mia.errors import DataError
from tfprune_mia.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    loader: Callable[[Optional[str], bool], Dataset]
    num_classes: int
    default_model: str
    description: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(name: str, num_classes: int, default_model: str, description: str):
    def decorator(loader):
        DATASETS.register(name)(DatasetSpec(loader, num_classes, default_model, description))
        return loader
    return decorator


def load_dataset(name: str, data_dir: Optional[str] = None, download: bool = True) -> Dataset:
    spec = DATASETS.get(name)
    # An explicit directory that does not exist is a typo: never create it and download into it.
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir} does not exist; fix --data_dir or create it and put the "
                        f"{name} files there")
    return spec.loader(data_dir, download)
