import numpy as np
import pytest
from sklearn.datasets import load_digits

from tfprune_mia.backend import set_seed


@pytest.fixture(scope="session")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int64)
    return (x[:600], y[:600]), (x[600:800], y[600:800])


@pytest.fixture
def seeded():
    set_seed(0)
