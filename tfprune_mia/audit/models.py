"""Audit your own trained Keras models: from models and arrays to an `ExperimentResult`, no run directory needed.

The `audit` binary is a thin wrapper over `audit_models`; a notebook can call it directly. The dense model and, if
given, its pruned version are audited side by side exactly like the `original` and `pruned` settings of
`train_prune`, with the same seeds, so the same models give the same numbers either way.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.attacks import ATTACKS, MembershipSet, ReferenceSignals, SignalConfig, compute_signals
from tfprune_mia.audit.core import DEFAULT_ATTACKS, audit, derived_seed, unique_attacks
from tfprune_mia.audit.results import AuditResult, ExperimentResult, ModelFacts
from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError, DataError
from tfprune_mia.models.saving import load_model_safely
from tfprune_mia.training import evaluate_accuracy
from tfprune_mia.versions import package_versions

Arrays = Tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ModelData:
    """A trained model with the records it was trained on (members) and records it never saw (non-members)."""

    model: keras.Model
    members: Arrays
    non_members: Arrays


def load_arrays(path: str, what: str) -> Arrays:
    """(x, y) from an .npz file holding arrays `x` and `y` (no pickles: a data file must not run code)."""
    from tfprune_mia.io import read_npz
    from tfprune_mia.errors import CheckpointError

    try:
        data = read_npz(path)
    except CheckpointError as err:
        raise DataError(f"{what} file {path}: {str(err).split('; ')[0]}; pass an .npz with arrays x and y "
                        "(numpy.savez(path, x=..., y=...))") from None
    if "x" not in data or "y" not in data:
        raise DataError(f"{what} file {path} has arrays {sorted(data)}, needs x and y; write it with "
                        "numpy.savez(path, x=..., y=...)")
    x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"]).astype(np.int64).reshape(-1)
    if len(x) != len(y) or len(y) == 0:
        raise DataError(f"{what} file {path}: x has {len(x)} rows and y {len(y)}; they must be equal and > 0")
    return x, y


def load_keras_model(path: str, what: str = "model") -> keras.Model:
    """A saved Keras model (h5 or SavedModel directory), loaded in safe mode."""
    if not Path(path).exists():
        raise ConfigError(f"{what} {path} does not exist; pass the path of a saved Keras model (.h5 or a "
                          "SavedModel directory)")
    return load_model_safely(Path(path), what, "pass a Keras model saved with model.save(...)")


def _check_labels(net: keras.Model, arrays: Arrays, what: str) -> None:
    classes = net.output_shape[-1]
    if arrays[1].min() < 0 or arrays[1].max() >= classes:
        raise DataError(f"{what}: labels span [{arrays[1].min()}, {arrays[1].max()}] but the model has {classes} "
                        "outputs; pass integer class labels 0..C-1")
    if tuple(arrays[0].shape[1:]) != tuple(net.input_shape[1:]):
        raise DataError(f"{what}: records of shape {arrays[0].shape[1:]} do not fit the model's input "
                        f"{net.input_shape[1:]}; pass records shaped like the model's training data")


def membership_signals(net: keras.Model, members: Arrays, non_members: Arrays,
                       signals: SignalConfig = SignalConfig(), with_sensitivity: bool = True) -> MembershipSet:
    """`net`'s signals on its members then non-members, with the ground truth."""
    return MembershipSet.from_parts(compute_signals(net, *members, signals, with_sensitivity),
                                    compute_signals(net, *non_members, signals, with_sensitivity))


def shadow_references(shadows: Sequence[keras.Model], target: Arrays, population: Optional[Arrays],
                      target_model: keras.Model, signals: SignalConfig) -> ReferenceSignals:
    """Shadow models as OUT reference models of the target samples (they never trained on them), and everyone's
    signals on population records that no model trained on (RMIA's z samples)."""
    models = tuple(compute_signals(s, *target, signals, with_sensitivity=False) for s in shadows)
    is_in = np.zeros((len(models), len(target[1])), bool)
    if population is None:
        return ReferenceSignals(models, is_in)
    return ReferenceSignals(models, is_in, compute_signals(target_model, *population, signals, False),
                            tuple(compute_signals(s, *population, signals, False) for s in shadows))


def model_facts(net: keras.Model, members: Arrays, non_members: Arrays,
                reference: Optional[keras.Model] = None) -> ModelFacts:
    from tfprune_mia.pruning.export import footprint
    from tfprune_mia.pruning.sparsity import sparsity_report

    report = sparsity_report(net, reference)
    return ModelFacts(train_accuracy=evaluate_accuracy(net, *members),
                      test_accuracy=evaluate_accuracy(net, *non_members),
                      sparsity={k: v for k, v in report.items() if k != "layers"},
                      layer_sparsity={name: layer["sparsity"] for name, layer in report["layers"].items()},
                      footprint=footprint(net) if reference is not None else None,
                      original_footprint=footprint(reference) if reference is not None else None)


def audit_models(target: ModelData, shadows: Sequence[ModelData] = (), pruned: Optional[keras.Model] = None,
                 pruned_shadows: Sequence[ModelData] = (), attacks: Sequence[str] = DEFAULT_ATTACKS,
                 population: Optional[Arrays] = None, signals: SignalConfig = SignalConfig(), seed: int = 7,
                 attack_epochs: int = 30, bootstrap_resamples: int = 200,
                 description: Optional[Mapping] = None) -> ExperimentResult:
    """Audit `target.model` (setting `original`) and, if given, its pruned version `pruned` (setting `pruned`,
    same members and non-members) with `attacks`.

    Shadow models (trained like the target on other data) train the shadow-based attacks and act as the OUT
    reference models of offline LiRA/RMIA; `pruned_shadows` (default: `shadows`) are the attacker's models for
    the pruned setting. `population`: records no model trained on, needed by RMIA.

    >>> result = audit_models(ModelData(net, (x[:200], y[:200]), (x[200:400], y[200:400])),
    ...                       shadows=[ModelData(shadow_net, (x[400:600], y[400:600]), (x[600:800], y[600:800]))],
    ...                       attacks=("conf", "loss"), bootstrap_resamples=0)
    >>> sorted(result.settings), sorted(result.original.attacks)
    (['original'], ['conf', 'loss'])
    """
    names = unique_attacks(attacks)
    online = [n for n in names if ATTACKS.get(n).needs_in_models]
    if online:
        raise ConfigError(f"attacks {', '.join(online)} need reference models trained on the target samples, "
                          "which only the train_prune pipeline builds; use their offline variants")
    needs_reference = any(ATTACKS.get(n).needs_reference for n in names)
    for data, what in [(target, "target")] + [(s, f"shadow {i}") for i, s in enumerate(shadows)]:
        _check_labels(data.model, data.members, f"{what} members")
        _check_labels(data.model, data.non_members, f"{what} non-members")
    target_arrays = tuple(np.concatenate(parts) for parts in zip(target.members, target.non_members))
    settings: Dict[str, AuditResult] = {}
    pairs = [("original", target.model, list(shadows), None)]
    if pruned is not None:
        pairs.append(("pruned", pruned, list(pruned_shadows or shadows), target.model))
    for setting, net, attacker_models, dense in pairs:
        member_set = membership_signals(net, target.members, target.non_members, signals)
        shadow_set = (MembershipSet.concat([membership_signals(s.model, s.members, s.non_members, signals)
                                            for s in attacker_models]) if attacker_models else None)
        reference = None
        if needs_reference and attacker_models:
            reference = shadow_references([s.model for s in attacker_models], target_arrays, population, net,
                                          signals)
        settings[setting] = audit(member_set, shadow_set, names, reference, bootstrap_resamples,
                                  seed=derived_seed(seed, setting), attack_epochs=attack_epochs,
                                  model=model_facts(net, target.members, target.non_members, dense))
    config = {"attacks": list(names), "seed": seed, "attack_epochs": attack_epochs,
              "bootstrap_resamples": bootstrap_resamples, "signals": dataclasses.asdict(signals),
              "num_shadows": len(shadows), **dict(description or {})}
    return ExperimentResult(config, settings, package_versions())

