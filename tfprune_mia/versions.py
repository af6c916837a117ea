"""The versions of the packages a result was computed with (every result file records them)."""
from __future__ import annotations

import platform
from typing import Dict

import numpy as np

import tfprune_mia
from tfprune_mia.backend import keras, tf


def package_versions() -> Dict[str, str]:
    import sklearn
    import tensorflow_model_optimization as tfmot

    return {"tfprune_mia": tfprune_mia.__version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "tensorflow_model_optimization": tfmot.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}
