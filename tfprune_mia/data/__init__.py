"""Dataset registry: one loader per dataset, each returning a normalised `Dataset` in canonical order.

A loader is `load(data_dir: Optional[str], download: bool) -> Dataset`; `data_dir=None` means the
dataset's default location. Each dataset also names the model the paper (or the demo) pairs it with.
"""
from tfprune_mia.data.registry import DATASETS, DatasetSpec, load_dataset, register  # noqa: F401

# Loader modules register themselves on import.
from tfprune_mia.data import cifar, chmnist, digits, fashion_mnist, svhn, tabular  # noqa: F401
