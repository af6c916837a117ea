"""tfprune-mia: membership-inference risk of pruned neural networks, measured and defended.

Importing the package pins the process to one Keras (tf_keras, i.e. Keras 2): tfmot 0.8 flips
TF_USE_LEGACY_KERAS on import and keras-tuner flips `tf.keras` back, so the variable must be set before
TensorFlow is first imported, and every module imports `tf_keras` explicitly (see tfprune_mia.backend).
"""
import os

from tfprune_mia import noise

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Before any TensorFlow import (TF reads its native log level once): known third-party noise stays quiet unless
# TFPRUNE_MIA_VERBOSE=1 or a binary's --verbosity=1.
noise.configure()

__version__ = "0.1.0"
