"""The attack interface: attacks consume signals only, `fit` on shadow data and `score` target samples."""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.registry import Registry


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

    def __init__(self, context: AttackContext = AttackContext()):
        self.context = context

    @abc.abstractmethod
    def fit(self, shadow: MembershipSet) -> "Attack":
        """Learn from the shadow models' members and non-members."""

    @abc.abstractmethod
    def score(self, signals: Signals) -> np.ndarray:
        """Membership scores of target samples."""

    def predict(self, signals: Signals) -> np.ndarray:
        return self.score(signals) >= self.decision_threshold


ATTACKS: Registry[type] = Registry("attack")
