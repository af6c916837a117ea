"""The configuration of one run of the paper's flow, and the cache keys derived from it.

Every cached stage lives under a key derived from everything it depends on, so a second run with another sparsity
reuses the trained originals and unrelated flags never invalidate a model.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from tfprune_mia import fs
from tfprune_mia.artifacts import ARTIFACTS
from tfprune_mia.attacks import ATTACKS, SignalConfig
from tfprune_mia.audit.core import DEFAULT_ATTACKS, unique_attacks
from tfprune_mia.data import DATASETS
from tfprune_mia.data.canaries import CANARY_KINDS
from tfprune_mia.data.splits import make_split
from tfprune_mia.defenses import DEFENSES, DefenseConfig, make_defense
from tfprune_mia.distribute import STRATEGIES
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import stable_hash
from tfprune_mia.models import MODELS
from tfprune_mia.pruning import PruneConfig, make_pruner
from tfprune_mia.training import TrainConfig

# Bump when the layout or meaning of cached artefacts changes; older run directories are then refused.
FORMAT_VERSION = 1
STACKED_TRAINING = ("off", "auto")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    dataset: str = "digits"
    model: str = ""  # empty: the dataset's default model
    data_dir: Optional[str] = None
    seed: int = 7
    num_shadows: int = 5
    train: TrainConfig = TrainConfig()
    finetune: TrainConfig = TrainConfig(epochs=15)
    prune: PruneConfig = PruneConfig()
    shadow_prune: Optional[PruneConfig] = None  # None: the attacker knows the victim's pruning
    attacks: Tuple[str, ...] = DEFAULT_ATTACKS
    attack_epochs: int = 100
    signals: SignalConfig = SignalConfig()
    run_root: str = "runs"
    # Extra reference models for the online LiRA/RMIA (trained, like shadows, on random halves of the victim's
    # train + test pool, in complementary pairs); built only when a selected attack needs IN models.
    num_reference_models: int = 2
    bootstrap_resamples: int = 200  # 95% intervals of every attack metric; 0 disables them
    # Applied while fine-tuning the pruned victim. The attacker's shadows are always also pruned without it
    # (non-adaptive attack); adaptive=True also prunes them with it and reports that attack beside.
    defense: DefenseConfig = DefenseConfig()
    adaptive: bool = False
    # Use a seeded random subset of this many records (0: all), for affordable CPU runs; own run directory.
    max_samples: int = 0
    # What the attacks query: the Keras model or its exported (quantised) TFLite file (tfprune_mia.artifacts);
    # every model's signals then come from its artefact, the attacker's too (it deploys its replicas alike).
    attack_artifact: str = "keras"
    # Other sparsities the victim is also released at, beside its dense original: versions for the multi-version
    # attacks (pair_*), each also replicated by the attacker's shadows and reference models.
    released_sparsities: Tuple[float, ...] = ()
    # Canaries for the privacy audit (audit/privacy.py): this many records of the shadow half, made `canary_kind`,
    # each added to the victim's training set with probability 1/2 (0: none; the victim's splits never change).
    canaries: int = 0
    canary_kind: str = "mislabel"
    # How the models are trained and fine-tuned (tfprune_mia.distribute): an execution choice like the device, so
    # it is in no cache or result key; each model's meta records the strategy and replica count it trained under.
    distribution: str = "none"
    # "auto": the attacker's original models (shadows, reference models) are trained together as one stacked
    # model (tfprune_mia.training_batched) when their architecture allows it; statistically equivalent to
    # training them one by one, not bit-identical, so such models get their own cache keys. "off": one by one.
    stacked_training: str = "off"

    def __post_init__(self):
        spec = DATASETS.get(self.dataset)
        if not self.model:
            object.__setattr__(self, "model", spec.default_model)
        MODELS.get(self.model)
        if self.shadow_prune is None:
            object.__setattr__(self, "shadow_prune", self.prune)
        if self.num_shadows < 1:
            raise ConfigError(f"num_shadows={self.num_shadows}: the attack needs at least 1 shadow model")
        object.__setattr__(self, "attacks", unique_attacks(self.attacks))
        if self.attack_epochs < 1:
            raise ConfigError(f"attack_epochs={self.attack_epochs}: must be at least 1")
        if self.bootstrap_resamples < 0:
            raise ConfigError(f"bootstrap_resamples={self.bootstrap_resamples}: must be >= 0 (0 disables CIs)")
        if self.num_reference_models < 0 or self.num_reference_models % 2:
            raise ConfigError(f"num_reference_models={self.num_reference_models}: must be an even number >= 0 "
                              "(models come in complementary pairs so each sample is IN for half of them)")
        if self.max_samples < 0 or 0 < self.max_samples < 20:
            raise ConfigError(f"max_samples={self.max_samples}: use 0 (all records) or at least 20")
        if self.max_samples:  # a subset too small to balance members and non-members fails now, not after loading
            make_split(self.max_samples, self.seed, self.num_shadows)
        if self.adaptive and not self.defense.enabled:
            raise ConfigError("--adaptive needs a defense to adapt to; pass e.g. --defense=ppb")
        required = _required_pruner(self.defense)
        pruners = {self.prune.pruner} | ({self.shadow_prune.pruner} if self.adaptive else set())
        if required and pruners != {required}:
            raise ConfigError(f"defense {self.defense.name} is built on the {required} pruner; pass "
                              f"--pruner={required} (and the same for the shadows with --adaptive)")
        ARTIFACTS.get(self.attack_artifact)
        object.__setattr__(self, "released_sparsities", tuple(float(v) for v in self.released_sparsities))
        for sparsity in self.released_sparsities:
            if not 0.0 < sparsity < 1.0 or sparsity == self.prune.sparsity:
                raise ConfigError(f"released sparsity {sparsity:g}: must lie in (0, 1) and differ from the attacked "
                                  f"sparsity {self.prune.sparsity:g}; pass e.g. --released_sparsities=0.5,0.9")
        DEFENSES.get(self.defense.name).check_pruner(self.defense, make_pruner(self.prune))
        if self.canaries < 0:
            raise ConfigError(f"canaries={self.canaries}: use 0 (no privacy audit) or e.g. 500")
        CANARY_KINDS.get(self.canary_kind)
        STRATEGIES.get(self.distribution)
        refusal = DEFENSES.get(self.defense.name).strategy_refusal
        if self.distribution != "none" and refusal:
            raise ConfigError(f"defense {self.defense.name} cannot train under --distribution={self.distribution} "
                              f"({refusal}); pass --distribution=none")
        if self.stacked_training not in STACKED_TRAINING:
            raise ConfigError(f"stacked_training={self.stacked_training!r}: use one of {', '.join(STACKED_TRAINING)}")
        needs_in = [name for name in self.attacks if ATTACKS.get(name).needs_in_models]
        if needs_in and self.num_reference_models < 2:
            raise ConfigError(f"attacks {', '.join(needs_in)} need IN reference models; pass "
                              "--num_reference_models=2 (or more, even)")

    @property
    def uses_reference_models(self) -> bool:
        return any(ATTACKS.get(name).needs_in_models for name in self.attacks)

    @property
    def base_dir(self) -> fs.AnyPath:
        subset = f"-n{self.max_samples}" if self.max_samples else ""
        return fs.path(self.run_root) / f"{self.dataset}{subset}-{self.model}-seed{self.seed}"

    @property
    def settings(self) -> Tuple[str, ...]:
        """The attacked (victim, shadows) pairs: `pruned` = non-adaptive shadows (no defense)."""
        return ("original", "pruned") + (("pruned_adaptive",) if self.adaptive else ())

    def defense_for(self, role: str, setting: str) -> DefenseConfig:
        """The victim gets the defense; the attacker's models (shadows, references) only when adaptive."""
        if role == "victim" or setting == "pruned_adaptive":
            return self.defense
        return DefenseConfig()

    def canary_key(self) -> str:
        """The canary set's name in the run directory ('' without canaries)."""
        return f"canaries{self.canaries}-{self.canary_kind}" if self.canaries else ""

    def original_key(self, stacked: bool = False) -> str:
        """`stacked`: the key of originals trained as one stacked model (and of everything pruned from them);
        one-by-one originals keep the key they had before stacked training existed."""
        return "original-" + stable_hash([FORMAT_VERSION, self.dataset, self.model, self.seed,
                                          dataclasses.asdict(self.train)] + (["stacked"] if stacked else []), 8)

    def pruned_key(self, prune: PruneConfig, defense: DefenseConfig = DefenseConfig(), stacked: bool = False) -> str:
        # Undefended keys are unchanged, so every defense's non-adaptive shadows share one cached set.
        parts = [self.original_key(stacked), dataclasses.asdict(prune), dataclasses.asdict(self.finetune)]
        if not defense.enabled:
            return f"{prune.key}-" + stable_hash(parts, 8)
        return f"{prune.key}-{defense.key}-" + stable_hash(parts + [defense.relevant()], 8)

    def result_key(self) -> str:
        shadow = "" if self.shadow_prune == self.prune else f"_shadow-{self.shadow_prune.key}"
        defense = f"_{self.defense.key}{'-adaptive' if self.adaptive else ''}" if self.defense.enabled else ""
        return f"{self.prune.key}{shadow}{defense}-" + stable_hash(self.to_dict(), 8)

    def to_dict(self) -> Dict:
        config = dataclasses.asdict(self)
        config.pop("run_root")
        config.pop("distribution")  # models trained under any strategy share their cache (see the field)
        # Left out at their defaults, so the result keys of configurations from before these options stay.
        for name, default in (("attack_artifact", "keras"), ("released_sparsities", ()), ("stacked_training", "off")):
            if config[name] == default or config[name] == list(default):
                config.pop(name)
        if not self.canaries:  # results of runs without canaries keep their keys
            config.pop("canaries")
            config.pop("canary_kind")
        return config

    @staticmethod
    def from_dict(data: Mapping[str, Any], run_root: str = "runs") -> "ExperimentConfig":
        """The inverse of to_dict (a stored result's configuration); ConfigError if it no longer validates."""
        data = dict(data)
        try:
            nested = {"train": TrainConfig(**data.pop("train")), "finetune": TrainConfig(**data.pop("finetune")),
                      "prune": PruneConfig.from_dict(data.pop("prune")),
                      "shadow_prune": PruneConfig.from_dict(data.pop("shadow_prune")),
                      "signals": SignalConfig(**data.pop("signals")),
                      "defense": DefenseConfig.from_dict(data.pop("defense"))}
            data["attacks"] = tuple(data.get("attacks", DEFAULT_ATTACKS))
            data["released_sparsities"] = tuple(data.get("released_sparsities", ()))
            return ExperimentConfig(**data, **nested, run_root=run_root)
        except (KeyError, TypeError) as err:
            raise ConfigError(f"a stored configuration does not match this version ({err}); re-run it with "
                              "train_prune") from None


def _required_pruner(defense: DefenseConfig) -> Optional[str]:
    return make_defense(defense).required_pruner



