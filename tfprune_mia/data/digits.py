"""scikit-learn's bundled 8x8 digits: the embedded default, available offline everywhere."""
from __future__ import annotations

import numpy as np

from tfprune_mia.data.registry import register
from tfprune_mia.data.base import Dataset


@register("digits", num_classes=10, default_model="small_cnn",
          description="scikit-learn's 1,797 8x8 handwritten digits (bundled, offline)")
def load_digits(data_dir=None, download=True) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Dataset("digits", x, bunch.target.astype(np.int64), 10)
