"""Who a model is in the flow (victim, shadow, reference) and which setting is attacked, as small dataclasses:
the semantics that used to hide in string prefixes (`role.startswith("reference_")`) live here, once."""
from __future__ import annotations

import dataclasses
from typing import Dict, List

from tfprune_mia.errors import ConfigError

KINDS = ("victim", "shadow", "reference")


@dataclasses.dataclass(frozen=True)
class Role:
    """kind: victim (attacked), shadow (the attacker's, trained on the shadow half), reference (the attacker's
    online LiRA/RMIA models, trained on halves of the victim's own pool); name: its directory in the run."""

    kind: str
    index: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown role kind {self.kind!r}; choose one of: {', '.join(KINDS)}")

    @property
    def name(self) -> str:
        return "victim" if self.kind == "victim" else f"{self.kind}_{self.index}"

    @property
    def is_victim(self) -> bool:
        return self.kind == "victim"

    @staticmethod
    def parse(name: str) -> "Role":
        if name == "victim":
            return VICTIM
        kind, _, index = name.rpartition("_")
        if kind not in KINDS[1:] or not index.isdigit():
            raise ConfigError(f"unknown role {name!r}; roles are victim, shadow_<i>, reference_<i>")
        return Role(kind, int(index))

    def __str__(self) -> str:
        return self.name


VICTIM = Role("victim")


def shadows(count: int) -> List[Role]:
    return [Role("shadow", i) for i in range(count)]


def references(count: int) -> List[Role]:
    return [Role("reference", i) for i in range(count)]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One attacked pair (victim, attacker's models): pruned or not, and whether the attacker's models went
    through the victim's defense too (the adaptive attack)."""

    name: str
    pruned: bool
    adaptive: bool = False


SETTINGS: Dict[str, Setting] = {s.name: s for s in (Setting("original", False), Setting("pruned", True),
                                                     Setting("pruned_adaptive", True, adaptive=True))}
