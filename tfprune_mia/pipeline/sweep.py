"""A sweep: many `train_prune` configurations (pruners x sparsities) run through the library, one table.

Every configuration is an ordinary cached experiment, so the originals are trained once and shared,
a finished configuration (its results JSON exists) is skipped, and a killed sweep resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import result_path, run_experiment
from tfprune_mia.pruning import PruneConfig

# (pruner name, sparsity) -> that pruner's full configuration, every option included (the binaries build it from
# flags); a sweep must never rebuild a PruneConfig from a few fields and silently drop the others.
PruneFactory = Callable[[str, float], PruneConfig]


@dataclasses.dataclass(frozen=True)
class SweepRow:
    config: ExperimentConfig
    result: ExperimentResult
    reused: bool  # True: the results JSON already existed, nothing was computed


def parse_sparsities(values: Sequence[str]) -> List[float]:
    sparsities = []
    for value in values:
        try:
            sparsities.append(float(value))
        except ValueError:
            raise ConfigError(f"sparsity {value!r} is not a number; pass e.g. --sparsities=0.5,0.7,0.9") from None
    return sparsities


def same_pruner_options(base: PruneConfig) -> PruneFactory:
    """A factory that keeps `base`'s options for its own pruner and uses defaults for other pruners."""
    def factory(pruner: str, sparsity: float) -> PruneConfig:
        if pruner == base.pruner:
            return dataclasses.replace(base, sparsity=float(sparsity))
        return PruneConfig(pruner, float(sparsity))
    return factory


def sweep_configs(base: ExperimentConfig, pruners: Sequence[str], sparsities: Sequence[float],
                  make_prune: Optional[PruneFactory] = None) -> List[ExperimentConfig]:
    """One config per (pruner, sparsity), validated up front so a typo fails before hours of training.

    The shadows follow the victim's pruning unless `base` gives them their own (an attacker who does not
    know the method keeps the same shadow setting across the grid).
    """
    if not pruners or not sparsities:
        raise ConfigError("empty sweep; pass e.g. --pruners=l1_unstructured --sparsities=0.5,0.7,0.9")
    make_prune = make_prune or same_pruner_options(base.prune)
    shadows_follow = base.shadow_prune == base.prune
    configs: List[ExperimentConfig] = []
    for pruner in pruners:
        for sparsity in sparsities:
            prune = make_prune(pruner, float(sparsity))
            config = dataclasses.replace(base, prune=prune,
                                         shadow_prune=prune if shadows_follow else base.shadow_prune)
            if config not in configs:
                configs.append(config)
    return configs


def run_sweep(configs: Sequence[ExperimentConfig],
              on_row: Optional[Callable[[int, SweepRow], None]] = None) -> List[SweepRow]:
    rows = []
    for index, config in enumerate(configs):
        reused = result_path(config).exists()
        row = SweepRow(config, run_experiment(config), reused)
        rows.append(row)
        if on_row is not None:
            on_row(index, row)
    return rows


def sweep_table(rows: Sequence[SweepRow]) -> str:
    """One line per configuration: accuracies and the strongest attack (by AUC on the pruned victim) original vs
    pruned, and how many attacks gained AUC; every attack's every metric goes to the CSV (`sweep_csv_rows`)."""
    if not rows:
        return "(empty sweep)"
    header = ["pruner", "sparsity", "real", "test orig", "test pruned", "strongest attack", "AUC orig",
              "AUC pruned", "TPR@1% orig", "TPR@1% pruned", "attacks AUC up", "status"]
    table = [header]
    for row in rows:
        result = row.result
        best = result.pruned.best("auc")
        before = result.original.attacks.get(best.attack) if best else None
        up = sum(1 for name, attack in result.pruned.ran.items()
                 if name in result.original.ran and attack["auc"] > result.original.ran[name]["auc"])
        table.append([row.config.prune.pruner, f"{row.config.prune.sparsity:g}",
                      f"{result.pruned.model.prunable_sparsity:.4f}", f"{result.original.model.test_accuracy:.4f}",
                      f"{result.pruned.model.test_accuracy:.4f}", best.attack if best else "-",
                      _metric(before, "auc"), _metric(best, "auc"), _metric(before, "tpr_at_0.01_fpr"),
                      _metric(best, "tpr_at_0.01_fpr"), f"{up}/{len(result.pruned.ran)}",
                      "reused" if row.reused else "computed"])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 1, 5) else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(line, widths))) for line in table]
    first = rows[0].config
    title = (f"{first.dataset} / {first.model}: {len(rows)} configurations, {first.num_shadows} shadows, "
             f"seed {first.seed}")
    return "\n".join([title, ""] + lines)


def sweep_csv_rows(rows: Sequence[SweepRow]) -> List[dict]:
    """Every (configuration, setting, attack) with every metric and interval, for the sweep's CSV."""
    return [{**record, "status": "reused" if row.reused else "computed"} for row in rows
            for record in row.result.rows()]


def _metric(attack, name: str) -> str:
    return f"{attack[name]:.4f}" if attack is not None and attack.ran else "-"
