"""What every pruner provides, and the prune -> (pre-phase) -> fine-tune (masks held) -> finalise step they share."""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry
from tfprune_mia.training import FitResult, LossTerm, MaskPairs, TrainConfig, fit_classifier

SCHEDULES = ("constant", "polynomial")
SCOPES = ("layer", "global")
SLIMMING_MODES = ("l1", "one_shot")


def parse_m_by_n(text: str) -> Optional[Tuple[int, int]]:
    """'2:4' -> (2, 4), tfmot's `sparsity_m_by_n`: M zeros in every N consecutive weights; '' -> None."""
    if not text:
        return None
    try:
        m, n = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"m_by_n={text!r}: write it as M:N, e.g. 2:4") from None
    if not 0 < m < n:
        raise ConfigError(f"m_by_n={text!r}: needs 0 < M < N, e.g. 2:4")
    return m, n


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """pruner: registry name; sparsity: fraction of prunable weights (structured: filters/channels) removed.

    schedule: `constant` = one-shot masks from the trained weights (the paper); `polynomial` = gradual
    pruning from 0 to `sparsity` over the first half of fine-tuning (l1_unstructured, layer scope only).
    scope: `layer` = the same sparsity in every prunable layer (nni LevelPruner); `global` = one magnitude
    threshold over all prunable kernels (l1_unstructured only).
    m_by_n: '' or 'M:N' (e.g. '2:4'): tfmot M zeros in every N weights, for l1_unstructured; sparsity must be M/N.
    slimming_mode: `l1` = network slimming (Liu et al. 2017): a sparsity-training phase with slimming_l1 * sum|gamma|
    before the global gamma threshold; `one_shot` = the authors' code (nni 2.2 SlimPruner, no L1 phase).
    admm_*: MCMIA / Zhang et al. ADMM: iterations K, epochs per W-step E, rho_0, rho growth per iteration, rho cap.
    """

    pruner: str = "l1_unstructured"
    sparsity: float = 0.7
    schedule: str = "constant"
    scope: str = "layer"
    m_by_n: str = ""
    slimming_mode: str = "l1"
    slimming_l1: float = 1e-4
    admm_iterations: int = 10
    admm_epochs: int = 1
    admm_rho: float = 1e-3
    admm_rho_growth: float = 1.3
    admm_rho_max: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"sparsity={self.sparsity}: must be strictly between 0 and 1 (e.g. 0.7)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown scope {self.scope!r}; choose one of: {', '.join(SCOPES)}")
        if self.slimming_mode not in SLIMMING_MODES:
            raise ConfigError(f"unknown slimming_mode {self.slimming_mode!r}; choose one of: "
                              f"{', '.join(SLIMMING_MODES)}")
        if self.slimming_l1 < 0:
            raise ConfigError(f"slimming_l1={self.slimming_l1}: must be >= 0 (paper: 1e-4)")
        if self.admm_iterations < 1 or self.admm_epochs < 1:
            raise ConfigError(f"admm_iterations={self.admm_iterations}, admm_epochs={self.admm_epochs}: both must be "
                              "at least 1 (e.g. 10 and 1)")
        if not (self.admm_rho > 0 and self.admm_rho_growth >= 1 and self.admm_rho_max >= self.admm_rho):
            raise ConfigError(f"admm_rho={self.admm_rho}, admm_rho_growth={self.admm_rho_growth}, admm_rho_max="
                              f"{self.admm_rho_max}: ADMM needs rho > 0, growth >= 1 and max >= rho (e.g. 1e-3, "
                              "1.3, 1.0)")
        m_by_n = parse_m_by_n(self.m_by_n)
        if m_by_n is not None and abs(self.sparsity - m_by_n[0] / m_by_n[1]) > 1e-9:
            raise ConfigError(f"m_by_n={self.m_by_n} zeroes {m_by_n[0]} of every {m_by_n[1]} weights: set "
                              f"--sparsity={m_by_n[0] / m_by_n[1]:g}")
        PRUNERS.get(self.pruner).check_config(self)  # unknown names fail with the list of valid ones

    @property
    def key(self) -> str:
        parts = [self.pruner, f"{self.sparsity:g}"]
        if self.schedule != "constant":
            parts.append(self.schedule)
        if self.scope != "layer":
            parts.append(self.scope)
        if self.m_by_n:
            parts.append(self.m_by_n.replace(":", "by"))
        if self.pruner == "slimming":
            parts.append("oneshot" if self.slimming_mode == "one_shot" else f"l1{self.slimming_l1:g}")
        return "-".join(parts)


@dataclasses.dataclass
class PreTrainData:
    """What a pruner's phase before fine-tuning (slimming's L1 phase, ADMM) may train on."""

    train: Tuple[np.ndarray, np.ndarray]
    dev: Tuple[np.ndarray, np.ndarray]
    train_config: TrainConfig
    work_dir: Path
    seed: int
    loss_terms: Sequence[LossTerm] = ()


class Pruner(abc.ABC):
    """One pruning method. `prepare` and `finalize` may return new models; the caller keeps no references."""

    # Set by pruners whose masks are plain variables outside the model, so that prune_and_finetune saves them
    # beside the training checkpoint (tfmot's masks are layer weights and travel in the checkpoint already).
    masks_outside_model = False

    def __init__(self, config: PruneConfig):
        self.config = config
        self.info: Dict = {}

    @classmethod
    def check_config(cls, config: PruneConfig) -> None:
        """Raise ConfigError for settings this pruner cannot honour (called by PruneConfig)."""
        if config.scope != "layer" or config.m_by_n or config.schedule != "constant":
            raise ConfigError(f"pruner {config.pruner} supports only --scope=layer --schedule=constant and no "
                              "--m_by_n; those options belong to l1_unstructured")

    def pre_phase(self, net: keras.Model, data: PreTrainData) -> keras.Model:
        """Train before masks are fixed (slimming's L1 phase, ADMM); default: nothing."""
        return net

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


@dataclasses.dataclass
class PruneResult:
    model: keras.Model
    fit: FitResult
    info: Dict  # pruner-specific record (ADMM residuals, slimming phase, channel counts) for the run meta


def persist_masks(pairs: MaskPairs, path: Path) -> None:
    """Save the masks on the first run; on a resumed run restore them, so a resumed fine-tune holds the same masks
    even where they came from a phase (ADMM) whose weights are not reproduced."""
    from tfprune_mia.io import atomic_path

    path = Path(path)
    if path.exists():
        from tfprune_mia.io import read_npz

        stored = read_npz(path)  # a corrupt file is a one-line CheckpointError, never a traceback
        for index, (_, mask) in enumerate(pairs):
            mask.assign(stored[f"m{index}"])
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{f"m{i}": mask.numpy() for i, (_, mask) in enumerate(pairs)})


def prune_and_finetune_detailed(net: keras.Model, config: PruneConfig, train: Tuple[np.ndarray, np.ndarray],
                                dev: Tuple[np.ndarray, np.ndarray], train_config: TrainConfig, work_dir: Path,
                                seed: int, loss_terms: Sequence[LossTerm] = ()) -> PruneResult:
    """Prune a trained `net` (after the pruner's own pre-phase, if any), fine-tune it with masks held (early
    stopping on dev) and return the exported model with the pruner's record."""
    work_dir = Path(work_dir)
    pruner = make_pruner(config)
    net = pruner.pre_phase(net, PreTrainData(train, dev, train_config, work_dir / "pre_phase", seed, loss_terms))
    steps_per_epoch = int(np.ceil(len(train[1]) / train_config.batch_size))
    prepared = pruner.prepare(net, steps_per_epoch, steps_per_epoch * train_config.epochs)
    pairs = pruner.mask_pairs(prepared)
    if pruner.masks_outside_model:
        persist_masks(pairs, work_dir / "masks.npz")
        for variable, mask in pairs:
            variable.assign(variable * mask)
    result = fit_classifier(prepared, train, dev, train_config, work_dir, seed=seed, loss_terms=loss_terms,
                            mask_pairs=pairs, callbacks=pruner.callbacks(work_dir / "tensorboard"))
    return PruneResult(pruner.finalize(prepared), result, pruner.info)


def prune_and_finetune(net: keras.Model, config: PruneConfig, train: Tuple[np.ndarray, np.ndarray],
                       dev: Tuple[np.ndarray, np.ndarray], train_config: TrainConfig, work_dir: Path,
                       seed: int, loss_terms: Sequence[LossTerm] = ()) -> Tuple[keras.Model, FitResult]:
    """Prune a trained `net`, fine-tune it with masks held (early stopping on dev), return the exported model."""
    result = prune_and_finetune_detailed(net, config, train, dev, train_config, work_dir, seed, loss_terms)
    return result.model, result.fit
