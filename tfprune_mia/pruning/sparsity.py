"""Sparsity accounting over the weights a pruner can remove (Conv/Dense/depthwise kernels)."""
from __future__ import annotations

from typing import Dict

import numpy as np

from tfprune_mia.backend import keras


def _prunable_kernel(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return layer.depthwise_kernel
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return layer.kernel
    return None


def sparsity_report(net: keras.Model) -> Dict:
    """Per-layer and total sparsity of the prunable kernels, plus parameter counts of the whole model."""
    layers = {}
    zeros = size = 0
    for layer in net.layers:
        kernel = _prunable_kernel(layer)
        if kernel is None:
            continue
        values = kernel.numpy()
        layer_zeros = int(np.sum(values == 0))
        layers[layer.name] = {"params": int(values.size), "zeros": layer_zeros,
                              "sparsity": layer_zeros / values.size}
        zeros += layer_zeros
        size += values.size
    all_weights = [w.numpy() for w in net.trainable_weights]
    total_params = int(sum(w.size for w in all_weights))
    nonzero = int(sum(np.count_nonzero(w) for w in all_weights))
    return {"layers": layers, "prunable_params": int(size), "prunable_zeros": int(zeros),
            "prunable_sparsity": zeros / size if size else 0.0,
            "trainable_params": total_params, "nonzero_trainable_params": nonzero,
            "overall_sparsity": 1.0 - nonzero / total_params if total_params else 0.0}
