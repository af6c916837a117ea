"""A study's report: any set of result files -> paper-style tables over seeds, the paired pruned-vs-original
verdicts, privacy at matched accuracy, and the release gate's verdict (`report_writer` writes it out as Markdown +
PNG + CSV/JSON + TensorBoard).

Runs that differ only by seed are one configuration (`configuration_key`); a configuration's sparsity axis
(same everything but the sparsity) is a family, along which the matched-accuracy comparison interpolates.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.audit.paired import SCORE_METRICS, SettingScores, load_scores, paired_delta, setting_estimates
from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.audit.gate import GateConfig, gate_violations
from tfprune_mia.audit.tables import configuration_key
from tfprune_mia import fs
from tfprune_mia.errors import CheckpointError, ConfigError

# -- loading ------------------------------------------------------------------------------------------------------

def result_files(sources: Sequence[str]) -> List[fs.AnyPath]:
    """Result JSONs named by `sources`: files, glob patterns, study directories (their study.json), run
    directories / run roots (every results/*.json below) or directories of studies; local or on any TensorFlow
    file system (e.g. gs://bucket/runs)."""
    found: List[fs.AnyPath] = []
    for source in sources:
        if any(char in source for char in "*?["):
            paths = [fs.path(p) for p in fs.glob(source)]
        elif _manifest(source) is not None:
            paths = [fs.path(t["result"]) for t in _manifest(source)["trials"] if fs.path(t["result"]).is_file()]
        elif fs.path(source).is_dir():
            paths = sorted(fs.path(source).rglob("results/*.json"))
            for manifest in sorted(fs.path(source).rglob("study.json")):  # a directory of studies
                paths += [fs.path(t["result"]) for t in _manifest(str(manifest.parent))["trials"]
                          if fs.path(t["result"]).is_file()]
        elif fs.path(source).is_file():
            paths = [fs.path(source)]
        else:
            raise ConfigError(f"{source}: no such result file, run directory or study directory; pass paths "
                              "written by train_prune, sweep or study")
        for path in paths:
            if isinstance(path, Path):
                path = path.resolve()  # a run root and its studies name the same files, relatively or not
            if path.suffix == ".json" and path not in found:
                found.append(path)
    if not found:
        raise ConfigError(f"no result files under {', '.join(sources)}; run train_prune, sweep or study first")
    return found


def _manifest(source: str) -> Optional[Dict[str, Any]]:
    """A study directory's study.json (the study directory may be on any TensorFlow file system)."""
    path = fs.path(source) / "study.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_results(sources: Sequence[str]) -> List[ExperimentResult]:
    """Every result named by `sources`, oldest file first (so a later re-run of the same seed wins)."""
    files = sorted(result_files(sources), key=fs.mtime_ns)
    return [ExperimentResult.load(path) for path in files]


# -- grouping -----------------------------------------------------------------------------------------------------

def _without(config: Mapping[str, Any], *names: str) -> Dict[str, Any]:
    return {k: v for k, v in config.items() if k not in names}


def family_key(result: ExperimentResult) -> Tuple:
    """Everything but seed and sparsity (the shadows' too when they follow the victim)."""
    config = dict(result.config)
    follow = config.get("shadow_prune") == config.get("prune")
    config["prune"] = _without(config.get("prune") or {}, "sparsity")
    if follow:
        config["shadow_prune"] = config["prune"]
    return tuple(sorted((k, repr(v)) for k, v in _without(config, "seed", "run_root").items()))


def defense_label(config: Mapping[str, Any]) -> str:
    defense = config.get("defense") or {}
    name = defense.get("name", "none")
    if name == "none":
        return "none"
    strength = defense.get("strength")
    label = name if strength is None else f"{name}:{strength:g}"
    return label + (" (adaptive)" if config.get("adaptive") else "")


def section_of(config: Mapping[str, Any]) -> str:
    subset = f" (n={config['max_samples']})" if config.get("max_samples") else ""
    return f"{config.get('dataset', '?')}{subset} / {config.get('model', '?')}"


@dataclasses.dataclass(frozen=True, eq=False)
class Configuration:
    """One configuration: its runs over distinct seeds (and their per-sample scores, where stored)."""

    runs: Tuple[ExperimentResult, ...]
    scores: Tuple[Dict[str, SettingScores], ...]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.runs[0].config

    @property
    def section(self) -> str:
        return section_of(self.config)

    @property
    def pruner(self) -> str:
        return (self.config.get("prune") or {}).get("pruner", "")

    @property
    def sparsity(self) -> float:
        return float((self.config.get("prune") or {}).get("sparsity", 0.0))

    @property
    def defense(self) -> str:
        return defense_label(self.config)

    @property
    def seeds(self) -> Tuple[int, ...]:
        return tuple(run.config.get("seed") for run in self.runs)

    @property
    def attacks(self) -> Tuple[str, ...]:
        return self.runs[0].attack_names

    @property
    def settings(self) -> Tuple[str, ...]:
        return tuple(s for s in ("original", "pruned", "pruned_adaptive") if s in self.runs[0].settings)

    @property
    def label(self) -> str:
        return f"{self.section}: {self.pruner}@{self.sparsity:g}, defense {self.defense}"

    def test_accuracy(self, setting: str) -> List[float]:
        return [float(r[setting].model.test_accuracy) for r in self.runs
                if setting in r.settings and r[setting].model.test_accuracy is not None]


def _scores_or_empty(result: ExperimentResult) -> Dict[str, SettingScores]:
    try:
        return load_scores(result)
    except CheckpointError:
        return {}  # results written before per-sample scores existed: no resampled intervals for them


def group_configurations(results: Iterable[ExperimentResult]) -> List[Configuration]:
    by_key: Dict[Tuple, Dict[Any, ExperimentResult]] = defaultdict(dict)
    for result in results:
        by_key[configuration_key(result)][result.config.get("seed")] = result  # later files win
    configurations = []
    for seeds in by_key.values():
        runs = tuple(seeds[s] for s in sorted(seeds, key=str))
        configurations.append(Configuration(runs, tuple(_scores_or_empty(r) for r in runs)))
    configurations.sort(key=lambda c: (c.section, c.defense != "none", c.defense, c.pruner, c.sparsity))
    return configurations


# -- statistics ----------------------------------------------------------------------------------------------------

def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


@dataclasses.dataclass(frozen=True)
class StudyReport:
    configurations: Tuple[Configuration, ...]
    metric: str
    summary: Tuple[Dict[str, Any], ...]  # configuration x setting x attack, mean/std/interval of every metric
    deltas: Tuple[Dict[str, Any], ...]  # configuration x defended/pruned setting x attack, paired differences
    matched: Tuple[Dict[str, Any], ...]  # family x attack, pruned vs original at the original's test accuracy
    violations: Tuple[str, ...]
    gate: GateConfig
    num_resamples: int
    tolerance: float = 0.01

    @property
    def passed(self) -> bool:
        return not self.violations


def _identity(configuration: Configuration) -> Dict[str, Any]:
    return {"section": configuration.section, "pruner": configuration.pruner, "sparsity": configuration.sparsity,
            "defense": configuration.defense, "seeds": " ".join(str(s) for s in configuration.seeds),
            "num_seeds": len(configuration.runs)}


def summary_rows(configuration: Configuration, num_resamples: int) -> List[Dict[str, Any]]:
    rows = []
    for setting in configuration.settings:
        accuracy = configuration.test_accuracy(setting)
        for attack in configuration.attacks:
            estimates = setting_estimates(configuration.runs, configuration.scores, setting, attack, num_resamples)
            if not estimates:
                continue
            row = {**_identity(configuration), "setting": setting, "attack": attack,
                   "test_accuracy_mean": _mean(accuracy), "test_accuracy_std": _std(accuracy)}
            for metric, estimate in estimates.items():
                row.update({f"{metric}_mean": estimate.value, f"{metric}_std": _std(estimate.values),
                            f"{metric}_low": estimate.low, f"{metric}_high": estimate.high,
                            f"{metric}_per_seed": " ".join(f"{v:.6g}" for v in estimate.values)})
            rows.append(row)
    return rows


def delta_rows(configuration: Configuration, num_resamples: int) -> List[Dict[str, Any]]:
    rows = []
    for setting in configuration.settings[1:]:
        accuracy = [p - o for p, o in zip(configuration.test_accuracy(setting),
                                          configuration.test_accuracy("original"))]
        for attack in configuration.attacks:
            deltas = paired_delta(configuration.runs, configuration.scores, attack, setting,
                                  num_resamples=num_resamples)
            if not deltas:
                continue
            row = {**_identity(configuration), "setting": setting, "attack": attack,
                   "delta_test_accuracy": _mean(accuracy)}
            for metric, estimate in deltas.items():
                row.update({f"delta_{metric}": estimate.value, f"delta_{metric}_low": estimate.low,
                            f"delta_{metric}_high": estimate.high, f"verdict_{metric}": estimate.verdict})
            rows.append(row)
    return rows


def matched_accuracy_rows(configurations: Sequence[Configuration],
                          summary: Mapping[int, Sequence[Mapping[str, Any]]], metric: str,
                          tolerance: float = 0.01) -> List[Dict[str, Any]]:
    """Per family and attack: the pruned metric interpolated linearly along the sparsity axis to the sparsity
    where the pruned model's mean test accuracy equals the original's minus `tolerance` (the most pruned model
    within `tolerance` of the original's accuracy), minus the original's metric.

    When several sparsities cross that accuracy the highest is used; when none does the row says so and carries
    no difference (no extrapolation)."""
    by_family: Dict[Tuple, List[Configuration]] = defaultdict(list)
    for configuration in configurations:
        by_family[family_key(configuration.runs[0])].append(configuration)
    # summary: id(configuration) -> its summary rows
    lookup = {(key, row["setting"], row["attack"]): row for key, rows in summary.items() for row in rows}
    rows = []
    for members in by_family.values():
        members = sorted(members, key=lambda c: c.sparsity)
        first = members[0]
        for setting in first.settings[1:]:
            for attack in first.attacks:
                original = lookup.get((id(first), "original", attack))
                points = [(c.sparsity, lookup.get((id(c), setting, attack))) for c in members]
                points = [(s, row) for s, row in points if row is not None and f"{metric}_mean" in row]
                if original is None or not points:
                    continue
                target = original["test_accuracy_mean"] - tolerance
                row = {"section": first.section, "pruner": first.pruner, "defense": first.defense,
                       "setting": setting, "attack": attack, "metric": metric,
                       "sparsities": " ".join(f"{s:g}" for s, _ in points),
                       "original_test_accuracy": original["test_accuracy_mean"], "matched_test_accuracy": target,
                       "original_metric": original[f"{metric}_mean"]}
                row.update(_interpolate(target, [(s, r["test_accuracy_mean"], r[f"{metric}_mean"])
                                                 for s, r in points]))
                if row["matched_metric"] is not None:
                    row["delta"] = row["matched_metric"] - row["original_metric"]
                rows.append(row)
    return rows


def _interpolate(target: float, points: Sequence[Tuple[float, float, float]]) -> Dict[str, Any]:
    """points: (sparsity, accuracy, metric) sorted by sparsity."""
    found = None
    for (s0, a0, m0), (s1, a1, m1) in zip(points, points[1:]):
        if (a0 - target) * (a1 - target) <= 0 and a0 != a1:
            t = (target - a0) / (a1 - a0)
            found = (s0 + t * (s1 - s0), m0 + t * (m1 - m0))
    for s, a, m in points:
        if a == target and (found is None or s >= found[0]):
            found = (s, m)
    accuracies = [a for _, a, _ in points]
    if found is None:
        side = "above" if min(accuracies) > target else "below"
        return {"matched_sparsity": None, "matched_metric": None, "delta": None,
                "status": f"not matched: pruned test accuracy stays {side} the target "
                          f"({min(accuracies):.4f}-{max(accuracies):.4f} vs {target:.4f})"}
    return {"matched_sparsity": found[0], "matched_metric": found[1], "delta": None,
            "status": "interpolated along sparsity"}


def build_report(results: Sequence[ExperimentResult], metric: str = "auc", num_resamples: int = 200,
                 gate: GateConfig = GateConfig(), tolerance: float = 0.01) -> StudyReport:
    if metric not in SCORE_METRICS:
        raise ConfigError(f"report metric {metric!r} cannot be resampled from scores; choose one of "
                          f"{', '.join(SCORE_METRICS)}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"match_tolerance={tolerance}: an accuracy difference in [0, 1), e.g. 0.01")
    if num_resamples < 1:
        raise ConfigError(f"report_resamples={num_resamples}: the intervals need at least 1 resample (200+ for 95%)")
    configurations = group_configurations(results)
    if not configurations:
        raise ConfigError("no results to report; pass result files or run directories")
    by_configuration = {id(c): summary_rows(c, num_resamples) for c in configurations}
    summary = [row for c in configurations for row in by_configuration[id(c)]]
    deltas = [row for c in configurations for row in delta_rows(c, num_resamples)]
    matched = matched_accuracy_rows(configurations, by_configuration, metric, tolerance)
    return StudyReport(tuple(configurations), metric, tuple(summary), tuple(deltas), tuple(matched),
                       tuple(gate_violations(summary, deltas, gate, metric)), gate, num_resamples, tolerance)
