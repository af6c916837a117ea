"""One configuration of the paper's flow: stages -> `audit` per setting -> `ExperimentResult` -> result files.

dataset -> split -> original victim and shadows -> pruned victim and shadows -> signals -> attacks -> metrics.
The results JSON is written last: its existence means the configuration is complete, and a second call returns it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from absl import logging

from tfprune_mia import faults
from tfprune_mia.attacks import ATTACKS, MembershipSet
from tfprune_mia.attacks.tfp_bridge import OptionalDependencyError, run_tfp_suite
from tfprune_mia.audit.core import audit, derived_seed
from tfprune_mia.audit.divergence import divergence_report
from tfprune_mia.audit.results import AuditResult, ExperimentResult
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import write_json, write_npz
from tfprune_mia.locking import directory_lock
from tfprune_mia.pipeline.attack_cache import AttackCache
from tfprune_mia.pipeline.canary_audit import privacy_audit
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.roles import SETTINGS, VICTIM, Setting
from tfprune_mia.pipeline.stages import Stages
from tfprune_mia.progress import Progress
from tfprune_mia.summaries import log_metrics
from tfprune_mia.versions import package_versions


def result_path(config: ExperimentConfig) -> Path:
    """The results JSON of `config`, written last: its existence means this configuration is complete."""
    return config.base_dir / "results" / f"{config.result_key()}.json"


def attack_setting(stages: Stages, setting: Setting) -> Tuple[AuditResult, MembershipSet]:
    """Attack the victim of `setting` with attacks trained on correspondingly made shadows / references; attack
    results already computed on the same models with the same attack configuration are reused."""
    config = stages.config
    target = stages.membership(VICTIM, setting)
    cache = AttackCache(stages, setting)
    attacks = {name: cache.get(name) for name in config.attacks}
    missing = [name for name, result in attacks.items() if result is None]
    if missing:
        faults.point("stage.attack")
        needs_reference = any(ATTACKS.get(name).needs_reference for name in missing)
        with Progress(len(missing), f"attacks on the {setting.name.replace('_', ' ')} victim") as progress:
            def on_attack(index, total, name):
                progress.update(index, note=name)
            fresh = audit(target, stages.shadow_membership(setting), missing,
                          stages.reference_signals(setting) if needs_reference else None,
                          config.bootstrap_resamples, seed=derived_seed(config.seed, setting.name),
                          attack_epochs=config.attack_epochs, on_attack=on_attack)
            progress.update(len(missing))
        for name, result in fresh.attacks.items():
            if result.ran:  # a skipped attack (optional package missing) may run once the package is installed
                cache.put(result)
            attacks[name] = result
    tfp = _tf_privacy_suite(target, derived_seed(config.seed, "tf_privacy", setting.name))
    canaries = privacy_audit(stages, setting) if stages.canaries is not None else None
    result = AuditResult(attacks, divergence_report(target), stages.facts(setting), tfp,
                         np.asarray(target.is_member), np.asarray(target.signals.labels), canaries)
    return result, target


def _tf_privacy_suite(target, seed: int) -> Dict:
    """TF Privacy's own threshold/LR suite on the same signals, when its optional package is installed."""
    try:
        return run_tfp_suite(target, seed=seed)
    except OptionalDependencyError:
        return {}  # tfp_lr, when asked for, says once why it was skipped


def evaluate(stages: Stages, path: Path) -> ExperimentResult:
    """Build every model, attack every setting and write the result JSON, per-sample scores and figures."""
    config = stages.config
    started = time.time()
    settings = [SETTINGS[name] for name in config.settings]
    stages.build_models(settings)
    audits, targets = {}, {}
    for setting in settings:
        audits[setting.name], targets[setting.name] = attack_setting(stages, setting)
    index = stages.target_index()
    scores: Dict[str, np.ndarray] = {}
    for name, result in audits.items():
        # Per-sample risk scores: one row per target sample, joinable to the dataset through `index`.
        scores.update({f"{name}/{attack}": r.scores for attack, r in result.ran.items()})
        scores.update({f"{name}/is_member": result.is_member, f"{name}/labels": result.labels,
                       f"{name}/index": index})
    result = ExperimentResult(config.to_dict(), audits, package_versions(), stages.split.fingerprint(), path=str(path))
    result = dataclasses.replace(result, figures=_figures(config, path, result, targets),
                                 seconds=time.time() - started)
    write_npz(path.with_suffix(".scores.npz"), **scores)
    # One TensorBoard run per configuration: attacks compare across configurations in its scalars view.
    log_metrics({f"{setting}/{name}/{metric}": value for setting, audit_result in audits.items()
                 for name, attack in audit_result.ran.items() for metric, value in attack.metrics.items()},
                config.base_dir / "tensorboard" / "attack_metrics" / config.result_key())
    faults.point("stage.report")
    write_json(path, result.to_dict())
    return result


def _figures(config: ExperimentConfig, path: Path, result: ExperimentResult,
             targets: Dict[str, MembershipSet]) -> Dict[str, str]:
    """Figure-1 histograms and log-log ROC curves as PNG beside the result and in TensorBoard."""
    from tfprune_mia import plots

    figures = {"divergence": plots.divergence_figure(
        {setting: (t.signals, t.is_member) for setting, t in targets.items()},
        f"{config.dataset}/{config.model}: members vs non-members")}
    prune = config.prune
    defense = config.defense.key if config.defense.enabled else "no defense"
    for setting, audit_result in result.settings.items():
        curves = {name: (r.scores, audit_result.is_member) for name, r in audit_result.ran.items()}
        if curves:
            figures[f"roc_{setting}"] = plots.roc_figure(
                curves, f"{config.dataset}/{config.model} {prune.pruner} @ {prune.sparsity:g}, {defense}: "
                        f"{setting.replace('_', ' ')} victim")
    stem = path.with_suffix("")
    return plots.save_figures(figures, stem.parent / f"{stem.name}-figures",
                              config.base_dir / "tensorboard" / f"attacks-{stem.name}")


def result_lock(path: Path):
    return directory_lock(path.parent, name=f".{path.stem}.lock")


def run_experiment(config: ExperimentConfig) -> ExperimentResult:
    """Run (or reuse) one configuration and return its typed result.

    >>> from tfprune_mia import ExperimentConfig, run_experiment
    >>> result = run_experiment(ExperimentConfig(num_shadows=1, attacks=("conf",), run_root=str(tmp_path),
    ...                                          train=TINY_TRAIN, finetune=TINY_TRAIN, bootstrap_resamples=0))
    >>> sorted(result.settings)
    ['original', 'pruned']
    >>> round(result.pruned.model.prunable_sparsity, 2)
    0.7
    """
    # A second process on the same configuration waits, then reuses the result; other configurations run on
    # (each model stage has its own lock, so shared originals are trained once).
    stages = Stages(config)
    path = result_path(stages.config)  # a multi_worker worker's: in its scratch directory
    if not path.exists():
        stages.dataset  # read and checked before anything is written: bad data leaves no run directory behind
    with result_lock(path):
        if path.exists():
            logging.debug("reusing %s", path)
            return ExperimentResult.load(path)
        return evaluate(stages, path)


def rerun_attacks(config: ExperimentConfig) -> ExperimentResult:
    """Re-run the attacks (and metrics, figures) on the models train_prune cached, training nothing. A result
    that already exists for this configuration is kept: the re-run goes to a new, timestamped file beside it.
    A missing model raises CheckpointError."""
    if not (config.base_dir / "split.npz").exists():
        raise CheckpointError(f"no cached run at {config.base_dir}; run train_prune first with the same flags")
    path = result_path(config)
    if path.exists():
        path = path.with_name(f"{config.result_key()}.attack-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
    with result_lock(path):
        return evaluate(Stages(config, require_cached=True), path)
