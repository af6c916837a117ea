"""What every pruner provides, and the prune -> fine-tune (masks held) -> finalise step they share."""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry
from tfprune_mia.training import FitResult, LossTerm, MaskPairs, TrainConfig, fit_classifier

SCHEDULES = ("constant", "polynomial")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """pruner: registry name; sparsity: fraction of prunable weights removed, in (0, 1).

    schedule: `constant` = one-shot masks from the trained weights (the paper); `polynomial` = gradual
    pruning from 0 to `sparsity` over the first half of fine-tuning.
    """

    pruner: str = "l1_unstructured"
    sparsity: float = 0.7
    schedule: str = "constant"

    def __post_init__(self):
        if not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"sparsity={self.sparsity}: must be strictly between 0 and 1 (e.g. 0.7)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        PRUNERS.get(self.pruner)  # fails with the list of valid names

    @property
    def key(self) -> str:
        suffix = "" if self.schedule == "constant" else f"-{self.schedule}"
        return f"{self.pruner}-{self.sparsity:g}{suffix}"


class Pruner(abc.ABC):
    """One pruning method. `prepare` and `finalize` may return new models; the caller keeps no references."""

    def __init__(self, config: PruneConfig):
        self.config = config

    @abc.abstractmethod
    def prepare(self, net: keras.Model, steps_per_epoch: int, total_steps: int) -> keras.Model:
        """Return a model whose forward pass sees only unpruned weights, ready for fine-tuning."""

    @abc.abstractmethod
    def mask_pairs(self, net: keras.Model) -> MaskPairs:
        """(variable, mask) pairs re-applied after every optimiser step so pruned weights stay exactly 0."""

    def callbacks(self, log_dir: Path) -> List[keras.callbacks.Callback]:
        return []

    @abc.abstractmethod
    def finalize(self, net: keras.Model) -> keras.Model:
        """Return the exported model: wrappers stripped, masks multiplied in (structured pruners shrink it)."""


PRUNERS: Registry[type] = Registry("pruner")


def make_pruner(config: PruneConfig) -> Pruner:
    return PRUNERS.get(config.pruner)(config)


def prune_and_finetune(net: keras.Model, config: PruneConfig, train: Tuple[np.ndarray, np.ndarray],
                       dev: Tuple[np.ndarray, np.ndarray], train_config: TrainConfig, work_dir: Path,
                       seed: int, loss_terms: Sequence[LossTerm] = ()) -> Tuple[keras.Model, FitResult]:
    """Prune a trained `net`, fine-tune it with masks held (early stopping on dev), return the exported model."""
    pruner = make_pruner(config)
    steps_per_epoch = int(np.ceil(len(train[1]) / train_config.batch_size))
    prepared = pruner.prepare(net, steps_per_epoch, steps_per_epoch * train_config.epochs)
    result = fit_classifier(prepared, train, dev, train_config, work_dir, seed=seed, loss_terms=loss_terms,
                            mask_pairs=pruner.mask_pairs(prepared),
                            callbacks=pruner.callbacks(Path(work_dir) / "tensorboard"))
    return pruner.finalize(prepared), result
