"""ColumnFC: the paper's fully connected net for the tabular datasets (Purchase, Texas, Location)."""
from __future__ import annotations

import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import dense


@register("columnfc", "FC d-256-128-C with ReLU and dropout 0.1 (tabular datasets, Yuan & Zhang 2022)")
def columnfc(input_shape, num_classes) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    if len(input_shape) > 1:
        h = keras.layers.Reshape((int(np.prod(input_shape)),), name="flatten")(h)
    h = dense(256, "fc1", activation="relu")(h)
    h = keras.layers.Dropout(0.1, name="drop1")(h)
    h = dense(128, "fc2", activation="relu")(h)
    h = keras.layers.Dropout(0.1, name="drop2")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="columnfc")
