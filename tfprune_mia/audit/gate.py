"""The release gate: budgets on the upper ends of a study's 95% intervals, for people who ship pruned models and
want a CI step to refuse one that leaks (`report --gate_*` exits non-zero with the violations)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from tfprune_mia.audit.tables import METRIC_LABELS


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Release budgets: a configuration fails when the upper end of a 95% interval exceeds its budget."""

    tpr_at_1pct: Optional[float] = None
    auc: Optional[float] = None
    advantage: Optional[float] = None
    pruned_not_worse: Optional[float] = None  # largest tolerated increase of the report metric over the original

    def budgets(self) -> List[Tuple[str, float]]:
        pairs = [("tpr_at_0.01_fpr", self.tpr_at_1pct), ("auc", self.auc), ("advantage", self.advantage)]
        return [(metric, budget) for metric, budget in pairs if budget is not None]

    @property
    def active(self) -> bool:
        return bool(self.budgets()) or self.pruned_not_worse is not None


def gate_violations(summary: Sequence[Mapping[str, Any]], deltas: Sequence[Mapping[str, Any]], gate: GateConfig,
                    metric: str) -> List[str]:
    violations = []
    for row in summary:
        if row["setting"] == "original":
            continue  # the gate judges the models to be shipped: pruned (and defended) ones
        for name, budget in gate.budgets():
            high = row.get(f"{name}_high")
            if high is None or math.isnan(high):
                high = row.get(f"{name}_mean")  # no per-sample scores stored: the point estimate is all there is
            if high is not None and high > budget:
                violations.append(f"{row['section']}: {row['pruner']}@{row['sparsity']:g}, defense {row['defense']}, "
                                  f"{row['setting']}, attack {row['attack']}: {METRIC_LABELS[name]} upper 95% bound "
                                  f"{high:.4f} > budget {budget:g} (seeds {row['seeds']})")
    if gate.pruned_not_worse is not None:
        for row in deltas:
            high = row.get(f"delta_{metric}_high")
            if high is not None and high > gate.pruned_not_worse:
                violations.append(f"{row['section']}: {row['pruner']}@{row['sparsity']:g}, defense {row['defense']}, "
                                  f"{row['setting']}, attack {row['attack']}: {METRIC_LABELS[metric]} pruned - "
                                  f"original upper 95% bound {high:+.4f} > tolerated {gate.pruned_not_worse:+g} "
                                  f"(seeds {row['seeds']})")
    return violations
