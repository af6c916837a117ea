"""What every defense provides, and the config that selects one (Yuan & Zhang 2022; MCMIA; docs/paper_map.md).

A defense acts while the pruned model is fine-tuned (for MCMIA: during ADMM and masked retraining); the original
models are trained normally, except where the defense `trains_original` (DP end to end: the victim's original
too). It contributes loss terms / training hooks to that training and, optionally, a record for the run (DP's
epsilon). The attacker's shadows go through the same code: a non-adaptive
attacker's shadows get the `none` defense, an adaptive attacker's get the victim's defense and strength.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfprune_mia.errors import ConfigError
from tfprune_mia.options import NoOptions, Options, options_from_record, short
from tfprune_mia.registry import Registry
from tfprune_mia.training import FitResult, LossTerm, TrainConfig


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
    """name: registry name (`none`, `ppb`, `adv`, `dp`, `mcmia`); strength: `--defense_arg` (PPB lambda, the
    adversarial weight theta / lambda, or DP's noise multiplier sigma); None = the defense's default.
    options: that defense's own options (`DEFENSES.get(name).options_class`), None = its defaults.

    `to_dict()` / `from_dict()` round-trip exactly through JSON; `dataclasses.asdict` gives the same dict.
    """

    name: str = "none"
    strength: Optional[float] = None
    options: Optional[Options] = None

    def __post_init__(self):
        defense = DEFENSES.get(self.name)  # unknown names fail with the list of valid ones
        if self.strength is None:
            object.__setattr__(self, "strength", defense.default_strength)
        if self.strength is not None and not self.strength >= 0:
            raise ConfigError(f"defense_arg={self.strength}: must be >= 0")
        object.__setattr__(self, "options", defense.options_class.resolve(self.options, f"defense {self.name}"))
        defense.check_config(self)

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def relevant(self) -> Dict:
        """What this defense reads: name, strength (if it uses one) and its options, for cache keys; settings of
        other defenses are not part of the config at all, so they never split a cache."""
        defense = DEFENSES.get(self.name)
        record: Dict = {"name": self.name}
        if defense.uses_strength:
            record["strength"] = self.strength
        options = self.options.to_dict()
        if options:
            record["options"] = options
        return record

    @property
    def key(self) -> str:
        return DEFENSES.get(self.name).key(self)

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict) -> "DefenseConfig":
        """The inverse of to_dict; also reads the flat records written before options existed."""
        rest = dict(data)
        name, strength = rest.pop("name", cls.name), rest.pop("strength", None)
        return cls(name, strength, options_from_record(DEFENSES.get(name).options_class, rest, "name, strength"))


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
    # Earlier DP-SGD runs on the same records (DpSgdStage fields), which a DP accountant composes with this one.
    prior_stages: Tuple[Dict, ...] = ()

    @property
    def num_members(self) -> int:
        return len(self.members[1])

    @property
    def steps_per_epoch(self) -> int:
        return int(np.ceil(self.num_members / self.train_config.batch_size))


class Defense(abc.ABC):
    default_strength: Optional[float] = None
    uses_strength = True  # False: `strength` is not read, so it stays out of the cache key
    options_class: type = NoOptions  # the frozen dataclass of this defense's own settings
    # A pruner the defense is built on (MCMIA = ADMM + the game); None: any pruner.
    required_pruner: Optional[str] = None
    # Why this defense cannot train under a multi-device tf.distribute strategy (None: it can).
    strategy_refusal: Optional[str] = None

    def __init__(self, config: DefenseConfig):
        self.config = config
        self.options = config.options

    @classmethod
    def check_config(cls, config: DefenseConfig) -> None:
        """Raise ConfigError for a strength / options combination this defense cannot honour."""

    @classmethod
    def trains_original(cls, config: DefenseConfig) -> bool:
        """Whether the victim's original model is trained under this defense too (DP end to end)."""
        return False

    @classmethod
    def check_pruner(cls, config: DefenseConfig, pruner) -> None:
        """Raise ConfigError when `pruner` (a Pruner) would break what this defense promises."""

    @classmethod
    def key(cls, config: DefenseConfig) -> str:
        return "-".join([config.name, *config.options.key_parts(), short(config.strength)])

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
    uses_strength = False

    @classmethod
    def key(cls, config):
        return "none"

    def hooks(self, context):
        return []
