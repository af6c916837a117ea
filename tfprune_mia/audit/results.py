"""Typed results of an audit: one `AttackResult` per attack, one `AuditResult` per attacked model, and one
`ExperimentResult` per configuration of the paper's flow (original / pruned / pruned-adaptive side by side).

Every table, plot, report, gate and test reads these types instead of re-parsing nested dicts by string keys.
`to_dict()` writes the JSON layout result files have always had (so files written by earlier versions load with
`from_dict`, and a file of an unknown format is refused with one clear message); `rows()` gives flat records for
CSV without pandas; `table()` gives the terminal summary.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from tfprune_mia.audit.metrics import METRIC_NAMES
from tfprune_mia.audit.privacy import PrivacyAudit
from tfprune_mia.errors import CheckpointError

# Result files this version reads; 1 = the layout since the first release (unchanged).
RESULT_FORMATS = (1,)
RESULT_FORMAT = 1
SETTINGS = ("original", "pruned", "pruned_adaptive")


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """One attack on one model: metrics, bootstrap 95% intervals, per-class slices, and per-sample scores.

    `skipped` holds the reason when the attack could not run (an optional package missing); its metrics are
    then empty. `scores` (one membership score per target sample) is kept in memory and in the .scores.npz
    beside the JSON, not in the JSON itself.
    """

    attack: str
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    ci95: Mapping[str, Tuple[float, float]] = dataclasses.field(default_factory=dict)
    per_class: Mapping[int, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    skipped: Optional[str] = None
    scores: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def ran(self) -> bool:
        return self.skipped is None

    def __getitem__(self, metric: str) -> float:
        return self.metrics[metric]

    def interval(self, metric: str) -> Optional[Tuple[float, float]]:
        value = self.ci95.get(metric)
        return None if value is None else (float(value[0]), float(value[1]))

    def to_dict(self) -> Dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {**{k: float(v) for k, v in self.metrics.items()},
                "ci95": {k: [float(v[0]), float(v[1])] for k, v in self.ci95.items()},
                "per_class": {str(label): dict(values) for label, values in self.per_class.items()},
                "seconds": float(self.seconds)}

    @staticmethod
    def from_dict(attack: str, data: Mapping[str, Any]) -> "AttackResult":
        if "skipped" in data:
            return AttackResult(attack, skipped=str(data["skipped"]))
        metrics = {k: float(v) for k, v in data.items() if k not in ("ci95", "per_class", "seconds")}
        return AttackResult(attack, metrics, {k: tuple(v) for k, v in data.get("ci95", {}).items()},
                            {int(label): dict(values) for label, values in data.get("per_class", {}).items()},
                            float(data.get("seconds", 0.0)))

    def row(self) -> Dict[str, Any]:
        """A flat record: attack, every metric, and its interval as <metric>_low / <metric>_high."""
        record: Dict[str, Any] = {"attack": self.attack, "skipped": self.skipped or ""}
        for name in METRIC_NAMES:
            record[name] = self.metrics.get(name, "")
            low_high = self.interval(name)
            record[f"{name}_low"], record[f"{name}_high"] = low_high if low_high else ("", "")
        return record


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the audited model is: accuracies, sparsity, footprint, the pruner's and defense's records.

    Only the fields the caller knows are set (a user's own model may have no dev split or pruner)."""

    train_accuracy: Optional[float] = None
    dev_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    best_epoch: Optional[int] = None
    sparsity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    layer_sparsity: Mapping[str, float] = dataclasses.field(default_factory=dict)
    footprint: Optional[Mapping[str, Any]] = None
    original_footprint: Optional[Mapping[str, Any]] = None
    pruner_info: Optional[Mapping[str, Any]] = None
    defense: Optional[Mapping[str, Any]] = None

    @property
    def prunable_sparsity(self) -> Optional[float]:
        return self.sparsity.get("prunable_sparsity")

    def to_dict(self) -> Dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if getattr(self, field.name) is not None}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "ModelFacts":
        names = {field.name for field in dataclasses.fields(ModelFacts)}
        return ModelFacts(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Every attack on one model, with the model's prediction-divergence analysis and facts, and (with canaries)
    the canary audit's epsilon lower bounds."""

    attacks: Mapping[str, AttackResult]
    divergence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: ModelFacts = ModelFacts()
    tf_privacy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    is_member: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)
    labels: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)
    privacy_audit: Optional[PrivacyAudit] = None

    def __getitem__(self, attack: str) -> AttackResult:
        return self.attacks[attack]

    @property
    def ran(self) -> Dict[str, AttackResult]:
        return {name: result for name, result in self.attacks.items() if result.ran}

    def best(self, metric: str = "auc", exclude: Tuple[str, ...] = ()) -> Optional[AttackResult]:
        """The strongest attack by `metric` (what an attacker would pick), or None if none ran."""
        candidates = [r for name, r in self.ran.items() if name not in exclude]
        return max(candidates, key=lambda r: r.metrics[metric]) if candidates else None

    def rows(self) -> List[Dict[str, Any]]:
        return [result.row() for result in self.attacks.values()]

    def table(self) -> str:
        from tfprune_mia.audit.tables import audit_table

        return audit_table(self)

    def to_dict(self) -> Dict[str, Any]:
        record = {"model": self.model.to_dict(), "attacks": {n: r.to_dict() for n, r in self.attacks.items()},
                  "divergence": dict(self.divergence), "tf_privacy": dict(self.tf_privacy)}
        if self.privacy_audit is not None:  # absent without canaries, as in files of earlier versions
            record["privacy_audit"] = self.privacy_audit.to_dict()
        return record

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "AuditResult":
        return AuditResult({name: AttackResult.from_dict(name, value) for name, value in data["attacks"].items()},
                           data.get("divergence", {}), ModelFacts.from_dict(data.get("model", {})),
                           data.get("tf_privacy", {}), privacy_audit=_privacy_audit(data.get("privacy_audit")))


@dataclasses.dataclass(frozen=True, eq=False)
class ExperimentResult:
    """One configuration: the audits of the original, pruned and (with --adaptive) pruned-adaptive settings.

    `config` is the configuration as stored (a dict, so files of other versions stay readable;
    `ExperimentConfig.from_dict(result.config)` rebuilds the typed one where that is possible).
    """

    config: Mapping[str, Any]
    settings: Mapping[str, AuditResult]
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    split_fingerprint: str = ""
    figures: Mapping[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    path: Optional[str] = dataclasses.field(default=None, compare=False)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __getitem__(self, setting: str) -> AuditResult:
        return self.settings[setting]

    def __eq__(self, other) -> bool:
        """Equal when they store the same JSON (in memory tuples and int keys; on disk lists and strings)."""
        if not isinstance(other, ExperimentResult):
            return NotImplemented
        return _canonical(self.to_dict()) == _canonical(other.to_dict())

    @property
    def original(self) -> AuditResult:
        return self.settings["original"]

    @property
    def pruned(self) -> Optional[AuditResult]:
        return self.settings.get("pruned")

    @property
    def attack_names(self) -> Tuple[str, ...]:
        return tuple(self.config.get("attacks") or next(iter(self.settings.values())).attacks)

    def rows(self) -> List[Dict[str, Any]]:
        """One flat record per (setting, attack), with the configuration's identifying fields."""
        config = self.config
        prune = config.get("prune") or {}
        defense = (config.get("defense") or {}).get("name", "none")
        base = {"dataset": config.get("dataset", ""), "model": config.get("model", ""),
                "pruner": prune.get("pruner", ""), "sparsity": prune.get("sparsity", ""), "defense": defense,
                "seed": config.get("seed", "")}
        rows = []
        for setting, audit in self.settings.items():
            facts = {"setting": setting, "test_accuracy": audit.model.test_accuracy,
                     "train_accuracy": audit.model.train_accuracy,
                     "real_sparsity": audit.model.prunable_sparsity}
            rows += [{**base, **facts, **row} for row in audit.rows()]
        return rows

    def table(self) -> str:
        from tfprune_mia.audit.tables import summary_table

        return summary_table(self)

    def to_dict(self) -> Dict[str, Any]:
        audits = {s: a.privacy_audit.to_dict() for s, a in self.settings.items() if a.privacy_audit is not None}
        return {"format_version": RESULT_FORMAT, "config": dict(self.config), "versions": dict(self.versions),
                "split_fingerprint": self.split_fingerprint,
                "models": {s: a.model.to_dict() for s, a in self.settings.items()},
                "attacks": {s: {n: r.to_dict() for n, r in a.attacks.items()} for s, a in self.settings.items()},
                "divergence": {s: dict(a.divergence) for s, a in self.settings.items()},
                "tf_privacy": {s: dict(a.tf_privacy) for s, a in self.settings.items()},
                "figures": dict(self.figures), "seconds": float(self.seconds),
                **({"privacy_audit": audits} if audits else {}), **dict(self.extra)}

    @staticmethod
    def from_dict(data: Mapping[str, Any], path: Optional[str] = None) -> "ExperimentResult":
        where = f"{path} " if path else ""
        version = data.get("format_version")
        if version not in RESULT_FORMATS or "attacks" not in data or "config" not in data:
            raise CheckpointError(f"{where}was written by an incompatible tfprune_mia version (format {version!r}, "
                                  f"this version reads {', '.join(map(str, RESULT_FORMATS))}); use another "
                                  "--run_root or delete that file")
        known = {"format_version", "config", "versions", "split_fingerprint", "models", "attacks", "divergence",
                 "tf_privacy", "figures", "seconds", "result_path", "privacy_audit"}
        settings = {}
        for setting, attacks in data["attacks"].items():
            settings[setting] = AuditResult(
                {name: AttackResult.from_dict(name, value) for name, value in attacks.items()},
                data.get("divergence", {}).get(setting, {}), ModelFacts.from_dict(data["models"].get(setting, {})),
                data.get("tf_privacy", {}).get(setting, {}),
                privacy_audit=_privacy_audit(data.get("privacy_audit", {}).get(setting)))
        return ExperimentResult(data["config"], settings, data.get("versions", {}),
                                data.get("split_fingerprint", ""), data.get("figures", {}),
                                float(data.get("seconds", 0.0)), path,
                                {k: v for k, v in data.items() if k not in known})

    @staticmethod
    def load(path) -> "ExperimentResult":
        from tfprune_mia.io import read_json

        return ExperimentResult.from_dict(read_json(path), str(path))

    def with_path(self, path) -> "ExperimentResult":
        return dataclasses.replace(self, path=str(path))


def _privacy_audit(data: Optional[Mapping[str, Any]]) -> Optional[PrivacyAudit]:
    return None if data is None else PrivacyAudit.from_dict(data)


def _canonical(data: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=float))
