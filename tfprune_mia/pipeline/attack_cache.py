"""Attack results cached like every other stage, keyed by the attacked models and the attack's configuration.

The original victim and its shadows are the same for every sparsity, sweep trial, tuning trial and defense, so
their attacks (SAMIA alone is tens of seconds) are computed once per run directory and reused.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from tfprune_mia.attacks import ATTACKS
from tfprune_mia.audit.core import derived_seed
from tfprune_mia.audit.results import AttackResult
from tfprune_mia.io import read_json, read_npz, stable_hash, write_json, write_npz
from tfprune_mia.pipeline.config import FORMAT_VERSION
from tfprune_mia.pipeline.roles import VICTIM, Role, Setting


def attacked_roles(stages, name: str) -> List[Role]:
    """The models an attack reads: the victim, the shadows it learns from, the reference models it compares to."""
    attack = ATTACKS.get(name)
    roles = [VICTIM]
    if attack.needs_shadow or attack.needs_reference:
        roles += stages.shadow_roles()
    if attack.needs_reference:
        roles += stages.reference_roles()
    return roles


def attack_key(stages, setting: Setting, name: str) -> str:
    config = stages.config
    models = [str(stages.store(stages.spec(role, setting)).directory.relative_to(config.base_dir))
              for role in attacked_roles(stages, name)]
    parts = [FORMAT_VERSION, name, config.attack_epochs, config.bootstrap_resamples,
             derived_seed(config.seed, setting.name), dataclasses.asdict(config.signals), models]
    return f"{name}-{stable_hash(parts, 12)}"


class AttackCache:
    def __init__(self, stages, setting: Setting):
        self.stages, self.setting = stages, setting
        self.directory = stages.config.base_dir / "attacks"

    def _paths(self, name: str):
        stem = self.directory / attack_key(self.stages, self.setting, name)
        return stem.with_suffix(".json"), stem.with_suffix(".scores.npz")

    def get(self, name: str) -> Optional[AttackResult]:
        path, scores_path = self._paths(name)
        if not path.exists() or not scores_path.exists():
            return None
        result = AttackResult.from_dict(name, read_json(path))
        return dataclasses.replace(result, scores=read_npz(scores_path)["scores"]) if result.ran else result

    def put(self, result: AttackResult) -> None:
        path, scores_path = self._paths(result.attack)
        scores = result.scores if result.scores is not None else np.zeros(0)
        write_npz(scores_path, scores=scores)  # first: the JSON marks the entry complete
        write_json(path, result.to_dict())
