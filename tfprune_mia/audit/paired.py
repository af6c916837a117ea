"""Intervals over seeds AND samples, and the paired comparison pruned vs original.

A study runs every configuration with several seeds; each run stores one membership score per target sample and
attack (`<result>.scores.npz`), with the sample's dataset index, for the original and the pruned victim alike. The
question "does pruning leak more?" is then answered per sample pair: both victims are scored on the same target
samples, so the difference pruned - original is resampled with the SAME bootstrap indices on both sides (pairing
removes the sample-to-sample noise the two share), and seeds are resampled on top (a two-level bootstrap: seeds,
then samples within each seed), so the interval covers training randomness as well as the finite target set.

Only metrics computable from scores alone are resampled (AUC, advantage, TPR at low FPR): balanced accuracy needs
each attack's own decision threshold, which the score files do not keep.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia import fs
from tfprune_mia.audit.metrics import batched_metrics
from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import read_npz

SCORE_METRICS = ("auc", "advantage", "tpr_at_0.01_fpr", "tpr_at_0.001_fpr")
VERDICTS = ("higher", "lower", "no detectable difference")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its two-level bootstrap 95% interval; `values` are the per-seed numbers."""

    value: float
    low: float
    high: float
    values: Tuple[float, ...]

    @property
    def verdict(self) -> str:
        """For a difference: "higher" / "lower" when the whole interval lies above / below zero."""
        if self.low > 0:
            return VERDICTS[0]
        if self.high < 0:
            return VERDICTS[1]
        return VERDICTS[2]


@dataclasses.dataclass(frozen=True)
class SettingScores:
    scores: Dict[str, np.ndarray]  # attack -> one score per target sample
    is_member: np.ndarray
    index: np.ndarray


def scores_path(result: ExperimentResult) -> Path:
    if not result.path:
        raise CheckpointError("a result without a file has no per-sample scores; load it with ExperimentResult.load")
    return fs.path(result.path).with_suffix(".scores.npz")


def load_scores(result: ExperimentResult) -> Dict[str, SettingScores]:
    """setting -> its per-sample scores, membership labels and dataset indices."""
    arrays = read_npz(scores_path(result))
    settings: Dict[str, SettingScores] = {}
    for setting in result.settings:
        prefix = f"{setting}/"
        if f"{prefix}is_member" not in arrays:
            continue
        scores = {key[len(prefix):]: arrays[key] for key in arrays
                  if key.startswith(prefix) and key[len(prefix):] not in ("is_member", "labels", "index")}
        settings[setting] = SettingScores(scores, arrays[f"{prefix}is_member"].astype(bool), arrays[f"{prefix}index"])
    return settings


def paired(a: SettingScores, b: SettingScores, attack: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores of a, scores of b, membership), the samples matched by dataset index (same order if possible)."""
    if a.index.shape == b.index.shape and np.array_equal(a.index, b.index):
        return a.scores[attack], b.scores[attack], a.is_member
    common, in_a, in_b = np.intersect1d(a.index, b.index, return_indices=True)
    if not len(common) or not np.array_equal(a.is_member[in_a], b.is_member[in_b]):
        raise CheckpointError("the two settings' target samples do not match by index; they were not scored on "
                              "the same split, so they cannot be paired (re-run train_prune)")
    return a.scores[attack][in_a], b.scores[attack][in_b], a.is_member[in_a]


Unit = Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]  # (scores, paired scores or None, is_member)


def two_level_bootstrap(units: Sequence[Unit], num_resamples: int = 200, seed: int = 0,
                        confidence: float = 0.95) -> Dict[str, Tuple[float, float]]:
    """95% intervals of mean-over-units metric(b) - metric(a) (or of metric(a) when b is None) for SCORE_METRICS.

    Level 1 resamples members and non-members within each unit (stratified, as the per-run intervals), the same
    indices for a and b; level 2 resamples the units (seeds) with replacement. With one unit only level 1 remains.
    """
    if not units or num_resamples < 1:
        return {}
    per_unit = []  # [unit][metric] -> [num_resamples]
    for number, (first, second, is_member) in enumerate(units):
        is_member = np.asarray(is_member, bool)
        members, non_members = np.flatnonzero(is_member), np.flatnonzero(~is_member)
        rng = np.random.default_rng([seed, number])
        index = np.concatenate([rng.choice(members, (num_resamples, len(members))),
                                rng.choice(non_members, (num_resamples, len(non_members)))], axis=1)
        labels = np.broadcast_to(np.concatenate([np.ones(len(members), bool), np.zeros(len(non_members), bool)]),
                                 index.shape)
        # The decision threshold only matters for balanced accuracy / PPV, which are not reported from here.
        values = batched_metrics(np.asarray(first, np.float64)[index], labels, 0.0)
        if second is not None:
            other = batched_metrics(np.asarray(second, np.float64)[index], labels, 0.0)
            values = {name: other[name] - values[name] for name in SCORE_METRICS}
        per_unit.append({name: values[name] for name in SCORE_METRICS})
    rng = np.random.default_rng([seed, len(units), 1])
    if len(units) > 1:
        picks = rng.integers(0, len(units), (num_resamples, len(units)))
    else:
        picks = np.zeros((num_resamples, 1), int)
    rows = np.arange(num_resamples)[:, None]
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for name in SCORE_METRICS:
        stacked = np.stack([unit[name] for unit in per_unit])  # [units, resamples]
        means = stacked[picks, rows].mean(axis=1)
        intervals[name] = (float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))
    return intervals


def _metric(result: ExperimentResult, setting: str, attack: str, metric: str) -> Optional[float]:
    audit = result.settings.get(setting)
    found = audit.attacks.get(attack) if audit is not None else None
    return float(found[metric]) if found is not None and found.ran and metric in found.metrics else None


def setting_estimates(runs: Sequence[ExperimentResult], scores: Sequence[Dict[str, SettingScores]], setting: str,
                      attack: str, num_resamples: int = 200, seed: int = 0) -> Dict[str, Estimate]:
    """metric -> mean over seeds (from the result JSONs) with its two-level interval (from the scores)."""
    units = [(s[setting].scores[attack], None, s[setting].is_member) for s in scores
             if setting in s and attack in s[setting].scores]
    intervals = two_level_bootstrap(units, num_resamples, seed) if len(units) == len(runs) else {}
    estimates = {}
    for metric in SCORE_METRICS + ("balanced_accuracy",):
        values = [_metric(run, setting, attack, metric) for run in runs]
        values = [v for v in values if v is not None]
        if values:
            low, high = intervals.get(metric, (float("nan"), float("nan")))
            estimates[metric] = Estimate(float(np.mean(values)), low, high, tuple(values))
    return estimates


def paired_delta(runs: Sequence[ExperimentResult], scores: Sequence[Dict[str, SettingScores]], attack: str,
                 setting: str = "pruned", baseline: str = "original", num_resamples: int = 200,
                 seed: int = 0) -> Dict[str, Estimate]:
    """metric -> leakage(setting) - leakage(baseline), mean over seeds, with the paired two-level interval."""
    units, values = [], {metric: [] for metric in SCORE_METRICS}
    for run, score in zip(runs, scores):
        first, second = _metric(run, baseline, attack, "auc"), _metric(run, setting, attack, "auc")
        if first is None or second is None or baseline not in score or setting not in score:
            continue
        units.append(paired(score[baseline], score[setting], attack))
        for metric in SCORE_METRICS:
            values[metric].append(_metric(run, setting, attack, metric) - _metric(run, baseline, attack, metric))
    if not units:
        return {}
    intervals = two_level_bootstrap(units, num_resamples, seed)
    return {metric: Estimate(float(np.mean(values[metric])), *intervals[metric], tuple(values[metric]))
            for metric in SCORE_METRICS}
