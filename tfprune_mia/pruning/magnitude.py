"""L1 unstructured magnitude pruning through tfmot `prune_low_magnitude` (spec §4.2, `l1unstructure`).

Every Conv/Dense (and depthwise) kernel is pruned to the same per-layer sparsity, the first conv and the
classifier included, as the paper's nni LevelPruner does; biases and BatchNorm are left alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import tensorflow_model_optimization as tfmot

from tfprune_mia.backend import keras
from tfprune_mia.pruning.base import PRUNERS, Pruner
from tfprune_mia.training import MaskPairs

sparsity_api = tfmot.sparsity.keras
# The wrapper class is not re-exported by the public API; isinstance checks need it.
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402


def wrapped_layers(net: keras.Model) -> List[keras.layers.Layer]:
    return [layer for layer in net.layers if isinstance(layer, PruneLowMagnitude)]


@PRUNERS.register("l1_unstructured")
class L1Unstructured(Pruner):
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
        return sparsity_api.prune_low_magnitude(net, pruning_schedule=self.schedule(steps_per_epoch, total_steps))

    def mask_pairs(self, net) -> MaskPairs:
        return [(weight, mask) for layer in wrapped_layers(net) for weight, mask, _ in layer.pruning_vars]

    def callbacks(self, log_dir: Path):
        return [sparsity_api.UpdatePruningStep(), sparsity_api.PruningSummaries(log_dir=str(log_dir))]

    def finalize(self, net):
        for weight, mask in self.mask_pairs(net):
            weight.assign(weight * mask)
        return sparsity_api.strip_pruning(net)
