"""L1 unstructured magnitude pruning (Han et al. 2015; the authors' `l1unstructure`).

Every Conv/Dense (and depthwise) kernel is prunable, the first conv and the classifier included, as the paper's
nni LevelPruner does; biases and BatchNorm are left alone. `scope=layer` (the paper) goes through tfmot
`prune_low_magnitude` (constant or polynomial schedule, optional M:N); `scope=global` uses one threshold over all
prunable kernels, which tfmot does not offer, so its masks are plain variables held by the training step.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import tensorflow_model_optimization as tfmot

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.pruning.base import PRUNERS, Pruner, parse_m_by_n
from tfprune_mia.pruning.masks import apply_pairs, magnitude_threshold_mask, make_pairs, prunable_kernels
from tfprune_mia.training import MaskPairs

sparsity_api = tfmot.sparsity.keras
# The wrapper class is not re-exported by the public API; isinstance checks need it.
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402


def wrapped_layers(net: keras.Model) -> List[keras.layers.Layer]:
    return [layer for layer in net.layers if isinstance(layer, PruneLowMagnitude)]


@PRUNERS.register("l1_unstructured")
class L1Unstructured(Pruner):
    @classmethod
    def check_config(cls, config):
        if config.scope == "global" and (config.schedule != "constant" or config.m_by_n):
            raise ConfigError("--scope=global supports only --schedule=constant without --m_by_n; use "
                              "--scope=layer for gradual or M:N pruning")

    @property
    def global_scope(self) -> bool:
        return self.config.scope == "global"

    @property
    def masks_outside_model(self) -> bool:
        return self.global_scope

    def schedule(self, steps_per_epoch: int, total_steps: int):
        if self.config.schedule == "constant":
            # The wrapper increments its step before updating masks, so the first training step is step 1:
            # begin=end=1 computes the mask once from the trained weights (one-shot, like nni's LevelPruner)
            # and only re-applies it afterwards. end_step=0 would never prune at all.
            return sparsity_api.ConstantSparsity(self.config.sparsity, begin_step=1, end_step=1, frequency=1)
        return sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=self.config.sparsity,
                                            begin_step=0, end_step=max(1, total_steps // 2),
                                            frequency=max(1, steps_per_epoch))

    def prepare(self, net, steps_per_epoch, total_steps):
        if self.global_scope:
            kernels = prunable_kernels(net)
            values = [kernel.numpy() for kernel in kernels]
            flat = np.concatenate([np.abs(v).reshape(-1) for v in values])
            global_mask = magnitude_threshold_mask(flat, self.config.sparsity)
            splits = np.cumsum([v.size for v in values])[:-1]
            masks = [m.reshape(v.shape) for m, v in zip(np.split(global_mask, splits), values)]
            self._pairs = make_pairs(kernels, masks)
            apply_pairs(self._pairs)
            self.info = {"scope": "global", "layer_keep": {k.name: float(m.mean()) for k, m in zip(kernels, masks)}}
            return net
        kwargs = {}
        m_by_n = parse_m_by_n(self.config.m_by_n)
        if m_by_n is not None:
            kwargs["sparsity_m_by_n"] = m_by_n
        return sparsity_api.prune_low_magnitude(net, pruning_schedule=self.schedule(steps_per_epoch, total_steps),
                                                **kwargs)

    def mask_pairs(self, net) -> MaskPairs:
        if self.global_scope:
            return self._pairs
        return [(weight, mask) for layer in wrapped_layers(net) for weight, mask, _ in layer.pruning_vars]

    def callbacks(self, log_dir: Path):
        if self.global_scope:
            return []
        return [sparsity_api.UpdatePruningStep(), sparsity_api.PruningSummaries(log_dir=str(log_dir))]

    def finalize(self, net):
        for weight, mask in self.mask_pairs(net):
            weight.assign(weight * mask)
        return net if self.global_scope else sparsity_api.strip_pruning(net)
