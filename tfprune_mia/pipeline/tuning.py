"""Tuning a defense's strength with keras-tuner: maximise the pruned victim's test accuracy subject to a bound on
an attack metric, every trial logged to TensorBoard's hparams dashboard.

keras-tuner needs one scalar: objective = test accuracy when the attack metric is within the bound, else
-(metric - bound), which is negative, so every feasible trial ranks above every infeasible one and infeasible
trials rank by how far they miss the bound. The attack metric is taken from the adaptive attack when the
configuration runs one (the stronger attacker), and is the maximum over the selected attacks unless one attack
is named. Each trial is one cached experiment: the originals and the undefended shadows are trained once.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict, List, Optional

import keras_tuner
from tensorboard.plugins.hparams import api as hparams_api

from tfprune_mia import fs
from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.backend import tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import write_json

METRICS = ("balanced_accuracy", "auc", "tpr_at_0.01_fpr", "advantage")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    low: float
    high: float
    log_scale: bool = True
    metric: str = "balanced_accuracy"
    bound: float = 0.55
    attack: str = ""  # empty: the maximum over the experiment's attacks
    max_trials: int = 5

    def __post_init__(self):
        if not 0 <= self.low < self.high:
            raise ConfigError(f"tune range [{self.low}, {self.high}]: need 0 <= low < high")
        if self.log_scale and self.low <= 0:
            raise ConfigError("log-scale tuning needs tune_min > 0; pass --tune_min=0.1 or --notune_log")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown tune_metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
        if self.max_trials < 1:
            raise ConfigError(f"max_trials={self.max_trials}: must be at least 1")


def attack_metric(result: ExperimentResult, tune: TuneConfig) -> float:
    setting = "pruned_adaptive" if "pruned_adaptive" in result.settings else "pruned"
    attacks = result[setting].ran
    if tune.attack:
        if tune.attack not in attacks:
            raise ConfigError(f"tune_attack {tune.attack!r} is not among the run's attacks ({', '.join(attacks)})")
        return float(attacks[tune.attack][tune.metric])
    return max(float(m[tune.metric]) for m in attacks.values())


def objective(test_accuracy: float, metric: float, bound: float) -> float:
    return test_accuracy if metric <= bound else -(metric - bound)


class DefenseTuner(keras_tuner.Tuner):
    """A keras-tuner Tuner whose trial is a whole experiment (no hypermodel: run_trial is the trial)."""

    def __init__(self, base_config, tune: TuneConfig, run: Callable[[object], ExperimentResult], log_dir: Path, **kwargs):
        oracle = keras_tuner.oracles.RandomSearchOracle(objective=keras_tuner.Objective("objective", "max"),
                                                        max_trials=tune.max_trials, seed=base_config.seed)
        super().__init__(oracle=oracle, **kwargs)
        self.base_config, self.tune, self.run_experiment = base_config, tune, run
        self.log_dir = fs.path(log_dir)
        self.rows: List[Dict] = []
        with tf.summary.create_file_writer(str(self.log_dir)).as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam("defense_arg", hparams_api.RealInterval(tune.low, tune.high)),
                         hparams_api.HParam("defense", hparams_api.Discrete([base_config.defense.name]))],
                metrics=[hparams_api.Metric("test_accuracy"), hparams_api.Metric(f"attack_{tune.metric}"),
                         hparams_api.Metric("objective")])

    def run_trial(self, trial, *args, **kwargs):
        # keras-tuner's first trial takes the default: the defense's own default strength when it lies in the
        # range (else the range's nearest end), so the first row is the untuned defense.
        default = min(max(self.base_config.defense.strength, self.tune.low), self.tune.high)
        strength = trial.hyperparameters.Float("defense_arg", self.tune.low, self.tune.high, default=default,
                                               sampling="log" if self.tune.log_scale else "linear")
        config = dataclasses.replace(self.base_config,
                                     defense=dataclasses.replace(self.base_config.defense, strength=strength))
        result = self.run_experiment(config)
        accuracy = float(result.pruned.model.test_accuracy)
        metric = attack_metric(result, self.tune)
        value = objective(accuracy, metric, self.tune.bound)
        with tf.summary.create_file_writer(str(self.log_dir / trial.trial_id)).as_default():
            hparams_api.hparams({"defense_arg": strength, "defense": config.defense.name}, trial_id=trial.trial_id)
            tf.summary.scalar("test_accuracy", accuracy, step=1)
            tf.summary.scalar(f"attack_{self.tune.metric}", metric, step=1)
            tf.summary.scalar("objective", value, step=1)
        # keras-tuner prints "Trial 1" for trial_id "00": number rows the way its output does.
        self.rows.append({"trial": int(trial.trial_id) + 1, "defense_arg": strength, "test_accuracy": accuracy,
                          f"attack_{self.tune.metric}": metric, "feasible": metric <= self.tune.bound,
                          "objective": value, "result_path": result.path})
        return {"objective": value}


def tune_defense(base_config, tune: TuneConfig, run: Callable[[object], ExperimentResult],
                 directory: Optional[Path] = None) -> Dict:
    """Search `base_config.defense`'s strength; returns the trials and the best (feasible if any) trial."""
    if not base_config.defense.enabled:
        raise ConfigError("nothing to tune without a defense; pass e.g. --defense=ppb")
    directory = fs.path(directory or base_config.base_dir / "tuning")
    name = f"{base_config.result_key()}-{tune.metric}-{tune.bound:g}"
    tuner = DefenseTuner(base_config, tune, run, directory / "tensorboard" / name, directory=str(directory),
                         project_name=name, overwrite=True)
    tuner.search()
    rows = sorted(tuner.rows, key=lambda row: -row["objective"])
    best = rows[0] if rows else None
    summary = {"defense": base_config.defense.name, "tune": dataclasses.asdict(tune), "trials": rows,
               "best": best, "feasible_found": bool(best and best["feasible"]),
               "tensorboard": str(directory / "tensorboard" / name)}
    write_json(directory / f"{name}.json", summary)
    return summary


def format_tuning(summary: Dict) -> str:
    metric = f"attack_{summary['tune']['metric']}"
    lines = [f"tuning {summary['defense']}: maximise test accuracy s.t. {metric} <= {summary['tune']['bound']:g}",
             f"{'trial':>6}  {'defense_arg':>11}  {'test acc':>8}  {metric:>22}  {'feasible':>8}  {'objective':>9}"]
    for row in summary["trials"]:
        lines.append(f"{row['trial']:>6}  {row['defense_arg']:11.4g}  {row['test_accuracy']:8.4f}  "
                     f"{row[metric]:22.4f}  {str(row['feasible']):>8}  {row['objective']:9.4f}")
    best = summary["best"]
    if best is not None:
        verdict = "best feasible" if best["feasible"] else "no trial met the bound; closest"
        lines.append(f"{verdict}: defense_arg = {best['defense_arg']:.4g}")
    lines.append(f"TensorBoard hparams: tensorboard --logdir {summary['tensorboard']}")
    return "\n".join(lines)
