"""L1 unstructured magnitude pruning (Han et al. 2015; the authors' `l1unstructure`).

Every Conv/Dense (and depthwise) kernel is prunable, the first conv and the classifier included, as the paper's
nni LevelPruner does; biases and BatchNorm are left alone. `scope=layer` (the paper) goes through tfmot
`prune_low_magnitude` (constant or polynomial schedule, optional M:N); `scope=global` uses one threshold over all
prunable kernels, which tfmot does not offer, so its masks are plain variables held by the training step.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

import numpy as np
import tensorflow_model_optimization as tfmot

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.options import Options, option
from tfprune_mia.pruning.base import PRUNERS, Pruner, parse_m_by_n
from tfprune_mia.pruning.masks import MaskedPruner, magnitude_threshold_mask, make_pairs, prunable_kernels
from tfprune_mia.training import MaskPairs
from tfprune_mia.training_callbacks import EpochSummaries

sparsity_api = tfmot.sparsity.keras
# The wrapper class is not re-exported by the public API; isinstance checks need it.
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402


def wrapped_layers(net: keras.Model) -> List[keras.layers.Layer]:
    return [layer for layer in net.layers if isinstance(layer, PruneLowMagnitude)]


SCHEDULES = ("constant", "polynomial")
SCOPES = ("layer", "global")


@dataclasses.dataclass(frozen=True)
class L1UnstructuredOptions(Options):
    """schedule: `constant` = one-shot masks from the trained weights (the paper); `polynomial` = gradual pruning
    from 0 to the sparsity over the first half of fine-tuning (layer scope only).
    scope: `layer` = the same sparsity in every prunable layer (nni LevelPruner); `global` = one magnitude
    threshold over all prunable kernels.
    m_by_n: '' or 'M:N' (e.g. '2:4'): tfmot's M zeros in every N weights; the sparsity must then be M/N.
    """

    schedule: str = option("constant", key="")
    scope: str = option("layer", key="")
    m_by_n: str = option("", key="")

    def validate(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown scope {self.scope!r}; choose one of: {', '.join(SCOPES)}")
        parse_m_by_n(self.m_by_n)
        if self.scope == "global" and (self.schedule != "constant" or self.m_by_n):
            raise ConfigError("--scope=global supports only --schedule=constant without --m_by_n; use "
                              "--scope=layer for gradual or M:N pruning")

    def key_parts(self):
        return [part.replace(":", "by") for part in super().key_parts()]  # '2:4' -> '2by4': a path component


@PRUNERS.register("l1_unstructured")
class L1Unstructured(Pruner):
    """Layer scope through tfmot's prune_low_magnitude (its masks are wrapper weights)."""

    options_class = L1UnstructuredOptions

    @classmethod
    def create(cls, config):
        return GlobalMagnitude(config) if config.options.scope == "global" else cls(config)

    @classmethod
    def check_config(cls, config):
        m_by_n = parse_m_by_n(config.options.m_by_n)
        if m_by_n is not None and abs(config.sparsity - m_by_n[0] / m_by_n[1]) > 1e-9:
            raise ConfigError(f"m_by_n={config.options.m_by_n} zeroes {m_by_n[0]} of every {m_by_n[1]} weights: "
                              f"set --sparsity={m_by_n[0] / m_by_n[1]:g}")

    def schedule(self, steps_per_epoch: int, total_steps: int):
        if self.options.schedule == "constant":
            # The wrapper increments its step before updating masks, so the first training step is step 1:
            # begin=end=1 computes the mask once from the trained weights (one-shot, like nni's LevelPruner)
            # and only re-applies it afterwards. end_step=0 would never prune at all.
            return sparsity_api.ConstantSparsity(self.config.sparsity, begin_step=1, end_step=1, frequency=1)
        return sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=self.config.sparsity,
                                            begin_step=0, end_step=max(1, total_steps // 2),
                                            frequency=max(1, steps_per_epoch))

    def prepare(self, net, steps_per_epoch, total_steps):
        kwargs = {}
        m_by_n = parse_m_by_n(self.options.m_by_n)
        if m_by_n is not None:
            kwargs["sparsity_m_by_n"] = m_by_n
        return sparsity_api.prune_low_magnitude(net, pruning_schedule=self.schedule(steps_per_epoch, total_steps),
                                                **kwargs)

    def mask_pairs(self, net) -> MaskPairs:
        return [(weight, mask) for layer in wrapped_layers(net) for weight, mask, _ in layer.pruning_vars]

    def callbacks(self, log_dir: Path):
        return [sparsity_api.UpdatePruningStep(), PruningSummaries(log_dir)]

    def finalize(self, net):
        for weight, mask in self.mask_pairs(net):
            weight.assign(weight * mask)
        return sparsity_api.strip_pruning(net)


class PruningSummaries(EpochSummaries):
    """The scalars of tfmot's PruningSummaries -- each mask's sparsity and threshold when an epoch begins, at the
    optimiser's step, in the run `metrics` -- queued as events like EpochSummaries'. tfmot's callback is a Keras
    TensorBoard: its per-batch hooks kept fine-tuning on the per-step Keras fit instead of the whole-epoch
    compiled loop, and it wrote the epoch scalars and graph that fit_classifier's own EpochSummaries writes."""

    def on_epoch_begin(self, epoch, logs=None):
        scalars = {}
        for layer in wrapped_layers(self.model.net):
            for _, mask, threshold in layer.pruning_vars:
                scalars[f"{mask.name.split(':')[0]}/sparsity"] = 1.0 - float(np.mean(mask.numpy()))
                scalars[f"{threshold.name.split(':')[0]}/threshold"] = float(threshold.numpy())
        self.write("metrics", int(self.model.optimizer.iterations.numpy()), scalars)

    def on_epoch_end(self, epoch, logs=None):
        pass  # the epoch's own scalars: fit_classifier's EpochSummaries writes them


class GlobalMagnitude(MaskedPruner):
    """`l1_unstructured --scope=global`: one magnitude threshold over all prunable kernels, which tfmot does not
    offer, so its masks are plain variables."""

    def make_masks(self, net):
        kernels = prunable_kernels(net)
        values = [kernel.numpy() for kernel in kernels]
        flat = np.concatenate([np.abs(v).reshape(-1) for v in values])
        global_mask = magnitude_threshold_mask(flat, self.config.sparsity)
        splits = np.cumsum([v.size for v in values])[:-1]
        masks = [m.reshape(v.shape) for m, v in zip(np.split(global_mask, splits), values)]
        self.info = {"scope": "global", "layer_keep": {k.name: float(m.mean()) for k, m in zip(kernels, masks)}}
        return make_pairs(kernels, masks)
