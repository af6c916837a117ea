"""`audit_dp`: the canary audit of one released model, an empirical epsilon lower bound per attack next to the
DP accountant's epsilon (where a DP defense ran), and whether the bound breaks the accountant's promise.

Each attack scores the m canaries (each trained on with probability 1/2, its coin secret to the attack); the
one-run bound of Steinke, Nasr & Jagielski (NeurIPS 2023, audit/epsilon.py) turns the ranking into an epsilon that,
with probability >= `confidence`, the training run does not satisfy. Trying several attacks and reporting the best
is a multiple comparison, paid for with a Bonferroni correction over the attacks (inside each attack the guessing
rule is corrected too). A bound above an accountant's epsilon that covers the released model is a violated
promise: a bug in the DP training or a wrong accountant. The DP fine-tuning epsilon does not cover the released
model (its original saw the same records without DP), so there a larger bound is shown, not flagged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional

import numpy as np

from tfprune_mia.audit.epsilon import EpsilonBound, one_run_audit
from tfprune_mia.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PrivacyAudit:
    """The canary audit of one model.

    bounds: per attack that ran, its one-run bound at confidence 1 - (1 - confidence) / attacks; skipped: per
    attack that could not score canaries, why. accountant_epsilon / accountant_epsilon_pld: the DP accountant's
    RDP and PLD epsilon at `delta` (None without DP); covers_released_model: whether that epsilon covers every
    training run that saw the records (DP end to end) or only the fine-tuning.
    """

    canaries: int
    canary_kind: str
    included: int
    delta: float
    confidence: float
    bounds: Mapping[str, EpsilonBound] = dataclasses.field(default_factory=dict)
    skipped: Mapping[str, str] = dataclasses.field(default_factory=dict)
    accountant_epsilon: Optional[float] = None
    accountant_epsilon_pld: Optional[float] = None
    covers_released_model: bool = False

    @property
    def best(self) -> Optional[EpsilonBound]:
        return max(self.bounds.values(), key=lambda bound: bound.epsilon) if self.bounds else None

    @property
    def best_attack(self) -> Optional[str]:
        return max(self.bounds, key=lambda name: self.bounds[name].epsilon) if self.bounds else None

    @property
    def epsilon(self) -> float:
        """The audit's lower bound: the best attack's (valid jointly thanks to the correction); 0 if none ran."""
        return self.best.epsilon if self.bounds else 0.0

    @property
    def promised_epsilon(self) -> Optional[float]:
        """The tightest accountant epsilon: both accountants give upper bounds, so either one can be violated."""
        values = [v for v in (self.accountant_epsilon, self.accountant_epsilon_pld) if v is not None]
        return min(values) if values else None

    @property
    def violation(self) -> bool:
        promised = self.promised_epsilon
        return self.covers_released_model and promised is not None and self.epsilon > promised

    def to_dict(self) -> Dict[str, Any]:
        return {"canaries": self.canaries, "canary_kind": self.canary_kind, "included": self.included,
                "delta": self.delta, "confidence": self.confidence, "epsilon": self.epsilon,
                "best_attack": self.best_attack, "violation": self.violation,
                "bounds": {name: bound.to_dict() for name, bound in self.bounds.items()},
                "skipped": dict(self.skipped), "accountant_epsilon": _json_float(self.accountant_epsilon),
                "accountant_epsilon_pld": _json_float(self.accountant_epsilon_pld),
                "covers_released_model": self.covers_released_model}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "PrivacyAudit":
        try:
            return PrivacyAudit(int(data["canaries"]), str(data["canary_kind"]), int(data["included"]),
                                float(data["delta"]), float(data["confidence"]),
                                {name: EpsilonBound.from_dict(b) for name, b in data["bounds"].items()},
                                dict(data.get("skipped", {})), _read_float(data.get("accountant_epsilon")),
                                _read_float(data.get("accountant_epsilon_pld")),
                                bool(data.get("covers_released_model", False)))
        except KeyError as err:
            raise ConfigError(f"a privacy-audit record lacks {err}; it was written by another version: re-run "
                              "the audit") from None


def audit_dp(canary_scores: Mapping[str, np.ndarray], included: np.ndarray, delta: float, canary_kind: str,
             confidence: float = 0.95, skipped: Mapping[str, str] = (),
             defense: Optional[Mapping[str, Any]] = None) -> PrivacyAudit:
    """The one-run epsilon lower bound of each attack's canary scores (higher = more likely IN).

    canary_scores: attack -> one score per canary; included: the canaries' coin flips; delta: the delta the
    bounds are stated at (the accountant's, to compare like with like); defense: the model's defense record
    (`epsilon`, `epsilon_pld`, `covers_released_model` when DP ran).
    """
    included = np.asarray(included, bool)
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    corrected = 1.0 - (1.0 - confidence) / max(1, len(canary_scores))
    bounds = {name: one_run_audit(scores, included, delta, corrected) for name, scores in canary_scores.items()}
    defense = defense or {}
    return PrivacyAudit(len(included), canary_kind, int(included.sum()), float(delta), float(confidence), bounds,
                        dict(skipped), _read_float(defense.get("epsilon")), _read_float(defense.get("epsilon_pld")),
                        bool(defense.get("covers_released_model", False)))


def _json_float(value: Optional[float]):
    # JSON has no infinity: an accountant's inf (no noise) is written as the string "inf".
    return "inf" if value is not None and math.isinf(value) else value


def _read_float(value) -> Optional[float]:
    return None if value is None else float(value)
