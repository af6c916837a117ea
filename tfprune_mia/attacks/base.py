"""The attack interface: attacks consume signals only, `fit` on shadow data and `score` target samples.

One contract for every attack: `fit(shadow, reference=None)` then `score(signals, reference=None)`. Reference-model
attacks (LiRA, RMIA) read `ReferenceSignals`: the attacker's reference models' signals on the very target samples,
with which of those models trained on each sample (IN) or not (OUT), plus population samples that are non-members
of every model. Attacks that do not need an input ignore it, so callers never branch on the kind of attack;
`check_inputs` turns a missing input into one clear error before any work.

Attackers who hold several released versions of one model (the dense original next to its pruned release, or
several sparsities; CompLeak, USENIX Security 2026) need no new argument: `Signals.versions` carries the same
samples' signals under the other versions, for the target, the shadows (`MembershipSet.signals.versions`) and each
reference model (`ReferenceSignals.models[m].versions`), ordered alike (dense original first). Such attacks set
`needs_versions`; `unavailable_reason` says why one cannot run on a model released alone (the original setting),
and the audit reports it as skipped with that reason instead of failing.
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
    # What the attack learns from: shadow models' members/non-members, and/or reference models' signals on the
    # target samples (needs_in_models: some reference models trained on target samples; built only on demand).
    needs_shadow: bool = True
    needs_reference: bool = False
    needs_in_models: bool = False
    # Reads the target's, shadows' and reference models' other released versions (Signals.versions).
    needs_versions: bool = False

    def __init__(self, context: AttackContext = AttackContext()):
        self.context = context

    @abc.abstractmethod
    def fit(self, shadow: Optional[MembershipSet], reference: Optional[ReferenceSignals] = None) -> "Attack":
        """Learn from the shadow models' members and non-members (and/or the reference signals)."""

    @abc.abstractmethod
    def score(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        """Membership scores of target samples."""

    def check_inputs(self, shadow: Optional[MembershipSet], reference: Optional[ReferenceSignals]) -> None:
        """One clear error for an input this attack cannot do without."""
        name = getattr(self, "registry_name", type(self).__name__)
        if self.needs_shadow and shadow is None:
            raise ConfigError(f"attack {name} learns from shadow models: pass shadow=MembershipSet(...) of models "
                              "trained like the target on other data")
        if self.needs_reference and (reference is None or not reference.models):
            raise ConfigError(f"attack {name} needs reference models' signals on the target samples: pass "
                              "reference=ReferenceSignals(...) (the pipeline builds them)")
        if self.needs_in_models and not np.asarray(reference.is_in).any():
            raise ConfigError(f"attack {name} needs reference models that trained on some target samples (IN "
                              "models); use its offline variant or train IN reference models")
        if self.needs_versions:
            lacking = ([] if shadow is None or shadow.signals.versions else ["shadow"]) + (
                [] if reference is None or all(m.versions for m in reference.models) else ["reference"])
            if lacking:
                raise ConfigError(f"attack {name} compares released versions of a model, but the "
                                  f"{' and '.join(lacking)} models' signals carry none; attach them with Signals.with_versions (the "
                                  "pipeline does, in the pruned settings)")

    def unavailable_reason(self, target: Signals) -> Optional[str]:
        """Why this attack cannot score `target` at all (then the audit skips it), or None."""
        if self.needs_versions and not target.versions:
            return ("no pair: the attacked model is released alone (the original setting attacks the dense model "
                    "itself), so there is no other version to compare it with")
        return None

    def predict(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        return self.score(signals, reference) >= self.decision_threshold

    def run(self, shadow: Optional[MembershipSet], target: Signals,
            reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        """check_inputs, fit, then score the target samples."""
        self.check_inputs(shadow, reference)
        return self.fit(shadow, reference).score(target, reference)


ATTACKS: Registry[type] = Registry("attack")
