"""What every defense provides, and the config that selects one (spec §6; MCMIA spec §1).

A defense acts only while the pruned model is fine-tuned (for MCMIA: during ADMM and masked retraining); the
original models are always trained normally. It contributes loss terms / training hooks to that fine-tuning and,
optionally, a record for the run (DP's epsilon). The attacker's shadows go through the same code: a non-adaptive
attacker's shadows get the `none` defense, an adaptive attacker's get the victim's defense and strength.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry
from tfprune_mia.training import FitResult, LossTerm, TrainConfig

ADV_MODES = ("proper", "as_coded")
DP_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
    """name: registry name (`none`, `ppb`, `adv`, `dp`, `mcmia`); strength: `--defense_arg` (PPB lambda, the
    adversarial weight theta / lambda, or DP's noise multiplier sigma); None = the defense's default.

    adv_*: the min-max game of `adv` and `mcmia`: `proper` = k inference steps before every classifier step over
    the whole epoch (Nasr et al.); `as_coded` = the authors' code, k steps then ONE classifier step per epoch.
    mcmia_retrain_game: keep the game running during MCMIA's masked retraining (spec note C), not only in ADMM.
    dp_*: clip norm C; a target epsilon (calibrates sigma for the maximum number of epochs and overrides
    strength); delta (None: 1/N of the model's training set); the DP optimiser.
    """

    name: str = "none"
    strength: Optional[float] = None
    adv_mode: str = "proper"
    adv_steps: int = 7
    mcmia_retrain_game: bool = True
    dp_clip: float = 1.0
    dp_target_epsilon: Optional[float] = None
    dp_delta: Optional[float] = None
    dp_optimizer: str = "adam"

    def __post_init__(self):
        defense = DEFENSES.get(self.name)  # unknown names fail with the list of valid ones
        if self.strength is None:
            object.__setattr__(self, "strength", defense.default_strength)
        if self.strength is not None and not self.strength >= 0:
            raise ConfigError(f"defense_arg={self.strength}: must be >= 0")
        if self.adv_mode not in ADV_MODES:
            raise ConfigError(f"unknown adv_mode {self.adv_mode!r}; choose one of: {', '.join(ADV_MODES)}")
        if self.adv_steps < 1:
            raise ConfigError(f"adv_steps={self.adv_steps}: the inference model needs at least 1 step (spec: 7)")
        if not self.dp_clip > 0:
            raise ConfigError(f"dp_clip={self.dp_clip}: the clip norm must be positive (e.g. 1.0)")
        if self.dp_target_epsilon is not None and not self.dp_target_epsilon > 0:
            raise ConfigError(f"dp_target_epsilon={self.dp_target_epsilon}: must be positive (e.g. 8)")
        if self.dp_delta is not None and not 0 < self.dp_delta < 1:
            raise ConfigError(f"dp_delta={self.dp_delta}: must be in (0, 1), e.g. 1e-5; omit it for 1/N")
        if self.dp_optimizer not in DP_OPTIMIZERS:
            raise ConfigError(f"unknown dp_optimizer {self.dp_optimizer!r}; choose one of: "
                              f"{', '.join(DP_OPTIMIZERS)}")
        defense.check_config(self)

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def relevant(self) -> Dict:
        """The fields this defense reads: the cache key ignores the others, so unrelated flags reuse models."""
        return {field: getattr(self, field) for field in ("name",) + DEFENSES.get(self.name).fields}

    @property
    def key(self) -> str:
        return DEFENSES.get(self.name).key(self)


@dataclasses.dataclass(frozen=True)
class DefenseContext:
    """What a defense may use while fine-tuning one model (victim or shadow).

    members: the model's training split. reference: non-members the defense may train on (the model's dev
    split, see advreg.py). *_index: dataset indices, used to assert that the reference set is disjoint from the
    members and from the attack-evaluation non-members.
    """

    members: Tuple[np.ndarray, np.ndarray]
    reference: Tuple[np.ndarray, np.ndarray]
    num_classes: int
    train_config: TrainConfig
    seed: int
    member_index: Optional[np.ndarray] = None
    reference_index: Optional[np.ndarray] = None
    evaluation_index: Optional[np.ndarray] = None

    @property
    def num_members(self) -> int:
        return len(self.members[1])

    @property
    def steps_per_epoch(self) -> int:
        return int(np.ceil(self.num_members / self.train_config.batch_size))


class Defense(abc.ABC):
    default_strength: Optional[float] = None
    fields: Tuple[str, ...] = ("strength",)
    # A pruner the defense is built on (MCMIA = ADMM + the game); None: any pruner.
    required_pruner: Optional[str] = None

    def __init__(self, config: DefenseConfig):
        self.config = config

    @classmethod
    def check_config(cls, config: DefenseConfig) -> None:
        """Raise ConfigError for settings this defense cannot honour."""

    @classmethod
    def key(cls, config: DefenseConfig) -> str:
        return f"{config.name}-{config.strength:g}"

    @abc.abstractmethod
    def hooks(self, context: DefenseContext) -> List[LossTerm]:
        """Loss terms / TrainingHooks for the fine-tuning of one model."""

    def summary(self, context: DefenseContext, fit: FitResult) -> Dict:
        """A record of what the defense did (stored in the model's meta and the run JSON)."""
        return {}


DEFENSES: Registry[type] = Registry("defense")


def make_defense(config: DefenseConfig) -> Defense:
    return DEFENSES.get(config.name)(config)


@DEFENSES.register("none")
class NoDefense(Defense):
    fields = ()

    @classmethod
    def key(cls, config):
        return "none"

    def hooks(self, context):
        return []
