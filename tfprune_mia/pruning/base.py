"""What every pruner provides, and the prune -> (pre-phase) -> fine-tune (masks held) -> finalise step they share."""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia import fs
from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.options import NoOptions, Options, options_from_record, short
from tfprune_mia.registry import Registry
from tfprune_mia.training import FitResult, LossTerm, MaskPairs, TrainConfig, fit_classifier


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
    """pruner: registry name; sparsity: fraction of prunable weights (structured: filters/channels) removed;
    options: that pruner's own options (`PRUNERS.get(pruner).options_class`), None = its defaults.

    `key` names the run directory: pruner, sparsity and the options that differ from their defaults.
    `to_dict()` / `from_dict()` round-trip exactly through JSON; `dataclasses.asdict` gives the same dict.
    """

    pruner: str = "l1_unstructured"
    sparsity: float = 0.7
    options: Optional[Options] = None

    def __post_init__(self):
        if not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"sparsity={self.sparsity}: must be strictly between 0 and 1 (e.g. 0.7)")
        pruner = PRUNERS.get(self.pruner)  # unknown names fail with the list of valid ones
        object.__setattr__(self, "options", pruner.options_class.resolve(self.options, f"pruner {self.pruner}"))
        pruner.check_config(self)

    @property
    def key(self) -> str:
        return "-".join([self.pruner, short(self.sparsity), *self.options.key_parts()])

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict) -> "PruneConfig":
        """The inverse of to_dict; also reads the flat records written before options existed."""
        rest = dict(data)
        pruner, sparsity = rest.pop("pruner", cls.pruner), rest.pop("sparsity", cls.sparsity)
        return cls(pruner, sparsity, options_from_record(PRUNERS.get(pruner).options_class, rest,
                                                         "pruner, sparsity"))


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

    options_class: type = NoOptions  # the frozen dataclass of this pruner's own settings
    # Set by pruners whose masks are plain variables outside the model, so that prune_and_finetune saves them
    # beside the training checkpoint (tfmot's masks are layer weights and travel in the checkpoint already).
    masks_outside_model = False

    def __init__(self, config: PruneConfig):
        self.config = config
        self.options = config.options
        self.info: Dict = {}

    @classmethod
    def create(cls, config: PruneConfig) -> "Pruner":
        """The pruner object for `config` (a pruner may pick an implementation by its options)."""
        return cls(config)

    @classmethod
    def check_config(cls, config: PruneConfig) -> None:
        """Raise ConfigError for options this pruner cannot honour at that sparsity (called by PruneConfig)."""

    def pre_phase(self, net: keras.Model, data: PreTrainData) -> keras.Model:
        """Train before masks are fixed (slimming's L1 phase, ADMM); default: nothing."""
        return net

    def trains_before_masking(self) -> bool:
        """Whether `pre_phase` trains on the data: masks then depend on the data beyond the trained weights,
        which matters to a privacy accountant that only sees the training runs it was told about."""
        return type(self).pre_phase is not Pruner.pre_phase

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
    return PRUNERS.get(config.pruner).create(config)


@dataclasses.dataclass
class PruneResult:
    model: keras.Model
    fit: FitResult
    info: Dict  # pruner-specific record (ADMM residuals, slimming phase, channel counts) for the run meta


def persist_masks(pairs: MaskPairs, path: Path) -> None:
    """Save the masks on the first run; on a resumed run restore them, so a resumed fine-tune holds the same masks
    even where they came from a phase (ADMM) whose weights are not reproduced."""
    from tfprune_mia.io import atomic_path

    path = fs.path(path)
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
    work_dir = fs.path(work_dir)
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
