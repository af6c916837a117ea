"""The bundled digits dataset and the dataset registry."""
import numpy as np
import pytest

from tfprune_mia.data import DATASETS, load_dataset
from tfprune_mia.errors import ConfigError


def test_digits_shape_range_and_labels():
    data = load_dataset("digits")
    assert data.x.shape == (1797, 8, 8, 1) and data.x.dtype == np.float32
    assert data.input_shape == (8, 8, 1)
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.y.dtype == np.int64 and set(data.y.tolist()) == set(range(10))


def test_registry_lookup():
    spec = DATASETS.get("digits")
    assert (spec.num_classes, spec.default_model) == (10, "small_cnn")
    assert "digits" in DATASETS


def test_every_dataset_of_the_spec_is_registered():
    expected = {"digits": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10, "chmnist": 8,
                "purchase100": 100, "texas100": 100, "location": 30}
    assert {name: DATASETS.get(name).num_classes for name in DATASETS} == expected


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'") as err:
        load_dataset("imagenet")
    for name in ("cifar10", "digits", "location", "purchase100"):
        assert name in str(err.value)
