"""The membership-signal stages of one configuration (a mixin of pipeline.stages.Stages): each model's signals on
its members and non-members, with the signals of its other released versions attached, and the reference
models' signals on the target samples. Every signal set is cached beside its model, keyed by the signal
configuration, and written atomically.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from tfprune_mia import faults
from tfprune_mia.artifacts import artifact_signals, cached_artifact
from tfprune_mia.attacks import MembershipSet, ReferenceSignals, Signals, compute_signals
from tfprune_mia.backend import keras
from tfprune_mia.io import stable_hash
from tfprune_mia.pipeline import roles as roles_lib
from tfprune_mia.pipeline.roles import VICTIM, Role, Setting
from tfprune_mia.pipeline.store import ModelStore


class SignalStages:
    """The signal stages; the host class (Stages) provides config, split, part, arrays, model and the roles."""

    def _signals_path(self, store: ModelStore, subset: str) -> Path:
        artifact = "" if self.config.attack_artifact == "keras" else f"{self.config.attack_artifact}-"
        return (store.directory /
                f"signals-{stable_hash(dataclasses.asdict(self.config.signals), 8)}-{artifact}{subset}.npz")

    def _cached_signals(self, store: ModelStore, subset: str, index: np.ndarray, with_sensitivity: bool,
                        net: Optional[keras.Model]) -> Signals:
        path = self._signals_path(store, subset)
        if path.exists():
            return Signals.load(path)
        if self.config.attack_artifact != "keras":
            data, facts = cached_artifact(store.directory, self.config.attack_artifact, lambda: net or store.load())
            signals = artifact_signals(data, facts["ends_in_softmax"], *self.arrays(index), self.config.signals,
                                       with_sensitivity=with_sensitivity)
        else:
            signals = compute_signals(net or store.load(), *self.arrays(index), self.config.signals,
                                      with_sensitivity=with_sensitivity)
        signals.save(path)
        faults.point("stage.signals")
        return signals

    def _load_unless_cached(self, store: ModelStore, subsets: Iterable[str]) -> Optional[keras.Model]:
        """The model, loaded once for all of `subsets` whose signals are not cached yet (None if all are)."""
        cached = all(self._signals_path(store, subset).exists() for subset in subsets)
        return None if cached else store.load()

    def released_versions(self, setting: Setting) -> List[Tuple[Setting, Optional[float]]]:
        """The other released versions of a pruned setting's models, as (setting, sparsity) of `model`: the dense
        original first, then each other released sparsity. A dense model is released alone."""
        if not setting.pruned:
            return []
        return [(roles_lib.SETTINGS["original"], None)] + [(setting, s) for s in self.config.released_sparsities]

    def membership(self, role: Role, setting: Setting, sparsity: Optional[float] = None) -> MembershipSet:
        """Members = the model's training split, non-members = its held-out test split; in a pruned setting
        the signals carry the same samples' signals under the model's other released versions."""
        store = self.model(role, setting, sparsity)
        part = self.part(role)
        net = self._load_unless_cached(store, ("train", "test"))
        own = MembershipSet.from_parts(self._cached_signals(store, "train", part.train, True, net),
                                       self._cached_signals(store, "test", part.test, True, net))
        if sparsity is not None:
            return own
        versions = [self.membership(role, *version).signals for version in self.released_versions(setting)]
        return MembershipSet(own.signals.with_versions(versions), own.is_member)

    def shadow_membership(self, setting: Setting) -> MembershipSet:
        return MembershipSet.concat([self.membership(role, setting) for role in self.shadow_roles()])

    def target_index(self) -> np.ndarray:
        """Dataset indices of the target samples, in the order of the victim's MembershipSet."""
        return np.concatenate([self.split.victim.train, self.split.victim.test])

    def reference_signals(self, setting: Setting) -> ReferenceSignals:
        """Every reference model's signals on the target samples (victim train then test) with IN masks, and
        everyone's signals on the victim dev split (the population). Reference models = the attacker's shadows
        (OUT for every target sample) plus, for online attacks, the reference models trained on halves of the
        target pool. Posteriors/logits only: no reference attack reads sensitivity (11x cheaper)."""
        victim = self.split.victim
        pool = self.target_index()
        models, population, is_in = [], [], []
        for role in self.shadow_roles() + self.reference_roles():
            on_target, dev = self._reference_model_signals(role, setting)
            versions = [self._reference_model_signals(role, *v)[0] for v in self.released_versions(setting)]
            models.append(on_target.with_versions(versions))
            population.append(dev)
            is_in.append(np.isin(pool, self.part(role).train))
        victim_store = self.model(VICTIM, setting)
        population_target = self._cached_signals(victim_store, "target-dev", victim.dev, False, None)
        return ReferenceSignals(tuple(models), np.stack(is_in), population_target, tuple(population))

    def _reference_model_signals(self, role: Role, setting: Setting,
                                 sparsity: Optional[float] = None) -> Tuple[Signals, Signals]:
        """A model's signals on the target samples (victim train then test) and on the victim dev split."""
        victim = self.split.victim
        store = self.model(role, setting, sparsity)
        subsets = ("target-train", "target-test", "target-dev")
        net = self._load_unless_cached(store, subsets)
        train, test, dev = (self._cached_signals(store, name, getattr(victim, name.split("-")[1]), False, net)
                            for name in subsets)
        return Signals.concat([train, test]), dev


def artifact_facts_of(store: ModelStore, kind: str) -> Dict:
    """Size facts of a model's cached artefact (converted by its signals stage)."""
    _, facts = cached_artifact(store.directory, kind, store.load)
    return {k: v for k, v in facts.items() if k != "ends_in_softmax"}
