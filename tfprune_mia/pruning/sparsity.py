"""Sparsity accounting over the weights a pruner can remove (Conv/Dense/depthwise kernels).

Measured against the unpruned `reference` where one is given, so weights a structured pruner deleted from the
model count as removed, exactly like weights an unstructured pruner set to zero.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.pruning.masks import prunable_kernel


def _kernels(net: keras.Model) -> Dict[str, np.ndarray]:
    return {layer.name: kernel.numpy() for layer in net.layers
            if (kernel := prunable_kernel(layer)) is not None}


def sparsity_report(net: keras.Model, reference: Optional[keras.Model] = None) -> Dict:
    """Per-layer and total sparsity of the prunable kernels, plus parameter counts of the whole model.

    Without `reference`, sparsity = zeros / size of `net`'s own kernels; with it, sparsity = 1 - nonzero weights
    left / weights the reference had, per layer (by name) and in total.
    """
    kernels = _kernels(net)
    base = _kernels(reference) if reference is not None else kernels
    layers = {}
    removed = size = 0
    for name, original in base.items():
        values = kernels.get(name)
        nonzero = int(np.count_nonzero(values)) if values is not None else 0
        layer_removed = int(original.size) - nonzero
        layers[name] = {"params": int(original.size), "zeros": layer_removed, "sparsity": layer_removed / original.size}
        if values is not None and values.size != original.size:
            layers[name]["kept_shape"] = list(values.shape)
        removed += layer_removed
        size += original.size
    all_weights = [w.numpy() for w in net.trainable_weights]
    total_params = int(sum(w.size for w in all_weights))
    nonzero = int(sum(np.count_nonzero(w) for w in all_weights))
    report = {"layers": layers, "prunable_params": int(size), "prunable_zeros": int(removed),
              "prunable_sparsity": removed / size if size else 0.0,
              "trainable_params": total_params, "nonzero_trainable_params": nonzero,
              "overall_sparsity": 1.0 - nonzero / total_params if total_params else 0.0}
    if reference is not None:
        reference_params = int(sum(np.prod(w.shape) for w in reference.trainable_weights))
        report["reference_trainable_params"] = reference_params
        report["overall_sparsity"] = 1.0 - nonzero / reference_params if reference_params else 0.0
    return report
