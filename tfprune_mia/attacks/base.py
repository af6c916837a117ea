"""The attack interface: attacks consume signals only, `fit` on shadow data and `score` target samples.

Reference-model attacks (LiRA, RMIA) additionally read `ReferenceSignals`: the attacker's reference models'
signals on the very target samples, with which of those models trained on each sample (IN) or not (OUT), plus
population samples that are non-members of every model. Attacks that do not need it ignore the argument, so
`fit(shadow)` / `score(signals)` keep working unchanged.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Optional, Tuple

import numpy as np

from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry


@dataclasses.dataclass(frozen=True)
class ReferenceSignals:
    """Reference models' view of the target samples (rows of `models` align with the target signals).

    models[m]: signals of reference model m on the target samples; is_in[m, i]: sample i was in model m's
    training set. population_target / population[m]: the target model's and reference model m's signals on
    population samples that no model trained on (RMIA's z samples; may be None for attacks that do not use z).
    """

    models: Tuple[Signals, ...]
    is_in: np.ndarray
    population_target: Optional[Signals] = None
    population: Tuple[Signals, ...] = ()

    def __post_init__(self):
        is_in = np.asarray(self.is_in, bool)
        object.__setattr__(self, "is_in", is_in)
        if is_in.shape != (len(self.models), len(self.models[0]) if self.models else 0):
            raise ConfigError(f"reference IN mask {is_in.shape} does not match {len(self.models)} models on "
                              "the target samples; rebuild the reference signals")
        if self.population and len(self.population) != len(self.models):
            raise ConfigError("population signals are needed from every reference model; rebuild them")

    def statistic(self, name: str) -> np.ndarray:
        """[num_models, n] array of a per-sample Signals property (e.g. logit_confidence)."""
        return np.stack([getattr(s, name) for s in self.models])

    def subset(self, index) -> "ReferenceSignals":
        return ReferenceSignals(tuple(s.subset(index) for s in self.models), self.is_in[:, index],
                                self.population_target, self.population)


@dataclasses.dataclass(frozen=True)
class AttackContext:
    """What an attack may need beyond signals: training budget and seed (attacks stay dataset-agnostic)."""

    seed: int = 0
    epochs: int = 100
    batch_size: int = 128
    verbose: int = 0


class Attack(abc.ABC):
    """A membership inference attack. `score` returns one membership score per sample (higher = more likely
    a member); `decision_threshold` turns scores into the attack's own member / non-member decisions."""

    decision_threshold: float = 0.0
    # Reference-model attacks set these: they then need `reference=` in fit/score (and, when needs_in_models,
    # reference models that trained on some target samples; the experiment builds those only on demand).
    needs_reference: bool = False
    needs_in_models: bool = False

    def __init__(self, context: AttackContext = AttackContext()):
        self.context = context

    @abc.abstractmethod
    def fit(self, shadow: MembershipSet) -> "Attack":
        """Learn from the shadow models' members and non-members."""

    @abc.abstractmethod
    def score(self, signals: Signals) -> np.ndarray:
        """Membership scores of target samples."""

    def predict(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        scores = self.score(signals, reference) if self.needs_reference else self.score(signals)
        return scores >= self.decision_threshold

    def run(self, shadow: MembershipSet, target: Signals, reference: Optional[ReferenceSignals] = None
            ) -> np.ndarray:
        """fit then score, passing the reference signals only to the attacks that take them."""
        if not self.needs_reference:
            return self.fit(shadow).score(target)
        if reference is None:
            raise ConfigError(f"attack {type(self).__name__} needs reference-model signals; run it through the "
                              "experiment (train_prune / attack), which builds them")
        return self.fit(shadow, reference).score(target, reference)


ATTACKS: Registry[type] = Registry("attack")
