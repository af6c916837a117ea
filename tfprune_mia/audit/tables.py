"""Human-readable tables of typed results (the binaries print these; `*.table()` calls them).

Low-FPR first (Carlini et al., S&P 2022): an attack that identifies a few members with near certainty is a real
privacy failure even at an average-looking AUC, so every table leads with TPR at 0.1% and 1% FPR, then AUC, and
keeps the balanced accuracy the pruning papers report last.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from tfprune_mia.audit.results import AttackResult, AuditResult, ExperimentResult

ATTACK_COLUMNS = (("tpr_at_0.001_fpr", "TPR@0.1%"), ("tpr_at_0.01_fpr", "TPR@1%"), ("auc", "AUC"),
                  ("balanced_accuracy", "acc"))
# The columns shown with their bootstrap 95% intervals.
INTERVAL_COLUMNS = ATTACK_COLUMNS[:3]
# A study report's names for the metrics, and the ones its tables show.
METRIC_LABELS = {"balanced_accuracy": "bal. acc", "auc": "AUC", "advantage": "advantage",
                 "tpr_at_0.01_fpr": "TPR@1%FPR", "tpr_at_0.001_fpr": "TPR@0.1%FPR"}
TABLE_METRICS = ("balanced_accuracy", "auc", "tpr_at_0.01_fpr", "tpr_at_0.001_fpr")


def _row(cells: List[str], widths: List[int]) -> str:
    return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                     for i, (cell, width) in enumerate(zip(cells, widths)))


def _with_interval(attack: AttackResult, key: str) -> str:
    interval = attack.interval(key)
    value = f"{attack[key]:.4f}"
    return f"{value} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else value


def _interval_lines(result: ExperimentResult) -> List[str]:
    """TPR at 0.1% and 1% FPR and AUC with their bootstrap 95% intervals, per attack and setting."""
    lines = []
    for setting in ("original", "pruned"):
        if setting not in result.settings:
            continue
        ran = result[setting].ran
        for name in [n for n in result.attack_names if n in ran]:  # the configured order, also when reloaded
            attack = ran[name]
            if attack.interval("auc"):
                lines.append(f"  {setting:8s} {name:18s} " + "  ".join(
                    f"{label} {_with_interval(attack, key)}" for key, label in INTERVAL_COLUMNS))
    return ["", "bootstrap 95% intervals:"] + lines if lines else []


def _tf_privacy_lines(result: ExperimentResult) -> List[str]:
    """TF Privacy's own suite on the same target signals, when it ran (its absence is said once, by tfp_lr)."""
    lines = []
    for setting, audit in result.settings.items():
        suite = audit.tf_privacy or {}
        if suite and "skipped" not in suite:
            lines.append(f"  {setting}: " + ", ".join(f"{name} {r['auc']:.4f} / {r['advantage']:.4f}"
                                                     for name, r in suite.items()))
    return ["", "TF Privacy MIA suite (AUC / attacker advantage):"] + lines if lines else []


def _attack_cells(attack: Optional[AttackResult]) -> List[str]:
    if attack is None:
        return ["-"] * len(ATTACK_COLUMNS)
    if not attack.ran:
        return ["skipped"] * len(ATTACK_COLUMNS)
    return [f"{attack[key]:.4f}" for key, _ in ATTACK_COLUMNS]


def _skipped_lines(audits: Sequence[AuditResult]) -> List[str]:
    reasons: Dict[str, str] = {}
    for audit in audits:
        reasons.update({name: r.skipped for name, r in audit.attacks.items() if not r.ran})
    by_reason: Dict[str, List[str]] = defaultdict(list)
    for name, message in reasons.items():  # one line per reason: the pair attacks share theirs
        by_reason[message].append(name)
    return [f"{', '.join(names)} skipped: {message}" for message, names in by_reason.items()]


def audit_table(audit: AuditResult) -> str:
    """One model: its facts and every attack's metrics with the AUC interval."""
    lines = []
    facts = audit.model
    for label, value in (("train accuracy", facts.train_accuracy), ("test accuracy", facts.test_accuracy),
                         ("sparsity (prunable weights)", facts.prunable_sparsity)):
        if value is not None:
            lines.append(_row([label, f"{value:.4f}"], [28, 10]))
    for key, label in (("confidence_gap", "confidence gap"), ("sensitivity_gap", "sensitivity gap"),
                       ("generalisation_gap", "generalisation gap")):
        if key in audit.divergence:
            lines.append(_row([label, f"{audit.divergence[key]:+.4f}"], [28, 10]))
    header = (["attack"] + [f"{label} [95% interval]" for _, label in INTERVAL_COLUMNS]
              + [label for _, label in ATTACK_COLUMNS[len(INTERVAL_COLUMNS):]])
    widths = [18] + [max(len(h), 23) for h in header[1:len(INTERVAL_COLUMNS) + 1]] + [8] * (
        len(ATTACK_COLUMNS) - len(INTERVAL_COLUMNS))
    lines += ["", _row(header, widths)]
    for name, attack in audit.attacks.items():
        if attack.ran:
            cells = [name] + [_with_interval(attack, key) if i < len(INTERVAL_COLUMNS) else f"{attack[key]:.4f}"
                              for i, (key, _) in enumerate(ATTACK_COLUMNS)]
        else:
            cells = [name] + ["skipped"] * len(ATTACK_COLUMNS)
        lines.append(_row(cells, widths))
    return "\n".join(lines + _skipped_lines([audit]))


def _headline(result: ExperimentResult) -> str:
    config = result.config
    prune = config.get("prune") or {}
    shadow = config.get("shadow_prune") or prune
    if not prune:
        return f"audit of {config.get('target_model', 'a model')}"
    shadow_text = "same as victim" if shadow == prune else f"{shadow['pruner']} @ {shadow['sparsity']:g}"
    schedule = prune.get("schedule") or (prune.get("options") or {}).get("schedule")
    schedule_text = f" ({schedule})" if schedule else ""
    return (f"{config['dataset']} / {config['model']}: {prune['pruner']} @ sparsity {prune['sparsity']:g}"
            f"{schedule_text}; {config['num_shadows']} shadows (pruned: {shadow_text}); seed {config['seed']}")


def summary_table(result: ExperimentResult) -> str:
    """The side-by-side table of every binary: model facts, divergence and attacks, original vs pruned."""
    settings = [s for s in ("original", "pruned") if s in result.settings]
    labels = {"original": "orig", "pruned": "pruned"}
    lines = [_headline(result), ""]
    widths = [28] + [10] * len(settings)
    lines.append(_row(["model"] + settings, widths))
    for attr, label in (("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy"),
                        ("prunable_sparsity", "sparsity (prunable weights)")):
        values = [getattr(result[s].model, attr) for s in settings]
        if any(v is not None for v in values):
            lines.append(_row([label] + [f"{v:.4f}" if v is not None else "-" for v in values], widths))
    pruned = result.pruned
    if pruned is not None and pruned.model.footprint:
        before, after = pruned.model.original_footprint, pruned.model.footprint
        unchanged = before["params"] == after["params"]
        for key, label, scale, digits in (("params", "parameters (stored)", 1, 0), ("flops", "MFLOPs", 1e-6, 2),
                                          ("h5_gzip_bytes", "gzip size (KB)", 1 / 1024, 0)):
            lines.append(_row([label, f"{before[key] * scale:.{digits}f}", f"{after[key] * scale:.{digits}f}"],
                              widths))
        if unchanged:
            lines.append("  (unstructured pruning zeroes weights in place: stored parameters and FLOPs stay, "
                         "the compressed size shrinks)")
    lines += _artifact_lines(result, settings, widths)
    for key, label in (("confidence_gap", "confidence gap"), ("sensitivity_gap", "sensitivity gap"),
                       ("generalisation_gap", "generalisation gap")):
        if all(key in result[s].divergence for s in settings):
            lines.append(_row([label] + [f"{result[s].divergence[key]:+.4f}" for s in settings], widths))
    lines.append("")
    header = ["attack"] + [f"{label} {labels[s]}" for s in settings for _, label in ATTACK_COLUMNS]
    widths = [18] + [max(11, len(h)) for h in header[1:]]
    lines.append(_row(header, widths))
    for name in result.attack_names:
        cells = [name]
        for setting in settings:
            cells += _attack_cells(result[setting].attacks.get(name))
        lines.append(_row(cells, widths))
    lines += _skipped_lines([result[s] for s in settings])
    lines += _interval_lines(result)
    lines += _tf_privacy_lines(result)
    lines += _defense_lines(result)
    lines += privacy_audit_lines(result)
    if result.path:
        lines += ["", f"results: {result.path}"]
    return "\n".join(lines)


def _artifact_lines(result: ExperimentResult, settings: List[str], widths: List[int]) -> List[str]:
    """The attacked artefact (a TFLite export): its size, and the Keras model's accuracy beside its own."""
    facts = [result[s].model.footprint or {} for s in settings]
    if not all("artifact" in f for f in facts):
        return []
    kind = facts[0]["artifact"]
    return [_row([f"artifact {kind} (KB)"] + [f"{f['artifact_bytes'] / 1024:.1f}" for f in facts], widths),
            _row(["  gzip size (KB)"] + [f"{f['artifact_gzip_bytes'] / 1024:.1f}" for f in facts], widths),
            _row(["  Keras model test accuracy"] + [f"{f['keras_test_accuracy']:.4f}" for f in facts], widths)]


def _defense_lines(result: ExperimentResult) -> List[str]:
    """The defense and, with --adaptive, the attacks trained on defended shadows beside the non-adaptive ones."""
    pruned = result.pruned
    defense = pruned.model.defense if pruned is not None else None
    if not defense or defense.get("key") == "none":
        return []
    lines = ["", f"defense: {defense['key']}"]
    if "epsilon" in defense:
        pld = f", PLD {defense['epsilon_pld']:.3f}" if "epsilon_pld" in defense else ""
        covers = defense.get("covers_released_model", False)
        lines.append(f"  DP {'end to end' if covers else 'fine-tuning'}: epsilon = {defense['epsilon']:.3f} "
                     f"(RDP{pld}) at delta = {defense['delta']:.3g} (sigma {defense['noise_multiplier']:.3f}, "
                     f"clip {defense['l2_norm_clip']:g}, {_dp_steps(defense)})")
        if not covers:
            lines.append("  this epsilon covers the fine-tuning only: the original was trained on the same records "
                         "without DP, so it is no guarantee for the released model (--dp_scope=end_to_end is)")
    if "pruned_adaptive" in result.settings:
        lines.append("  attack          " + "  ".join(f"{label} non-adapt / adaptive" for _, label in ATTACK_COLUMNS))
        for name, adaptive in result["pruned_adaptive"].attacks.items():
            plain = pruned.attacks.get(name)
            if plain is None or not plain.ran or not adaptive.ran:
                continue
            lines.append(f"  {name:14s}  " + "  ".join(f"{plain[key]:.4f} / {adaptive[key]:.4f}"
                                                      for key, _ in ATTACK_COLUMNS))
    return lines


def _dp_steps(defense) -> str:
    stages = defense.get("stages") or []
    if len(stages) > 1:
        return " + ".join(str(stage["steps"]) for stage in stages) + " steps over the training stages"
    return f"{defense['steps']} steps"


def privacy_audit_lines(result: ExperimentResult) -> List[str]:
    """Per setting, the canary audit's epsilon lower bound beside the accountant's epsilon, and a warning where a
    bound exceeds an epsilon that covers the released model."""
    audits = {s: a.privacy_audit for s, a in result.settings.items() if a.privacy_audit is not None}
    if not audits:
        return []
    first = next(iter(audits.values()))
    lines = ["", f"canary audit: {first.canaries} {first.canary_kind} canaries ({first.included} IN), one-run "
                 f"epsilon lower bounds (Steinke et al. 2023) at {first.confidence:.0%} confidence over all attacks"]
    widths = [18, 12, 10, 24, 10]
    lines.append(_row(["setting", "eps >= (LB)", "attack", "accountant eps RDP/PLD", "delta"], widths))
    for setting, audit in audits.items():
        if audit.accountant_epsilon is None:
            promised = "-"
        else:
            promised = "/".join("-" if v is None else f"{v:.3f}"
                                for v in (audit.accountant_epsilon, audit.accountant_epsilon_pld)) + (
                "" if audit.covers_released_model else " (FT)")
        lines.append(_row([setting, f"{audit.epsilon:.3f}", audit.best_attack or "-", promised,
                           f"{audit.delta:.3g}"], widths))
    if any(a.accountant_epsilon is not None and not a.covers_released_model for a in audits.values()):
        lines.append("  (FT): the accountant covers the DP fine-tuning only, not the released model")
    skipped = sorted({f"{name} ({why})" for a in audits.values() for name, why in a.skipped.items()})
    if skipped:
        lines.append("  not scored on canaries: " + "; ".join(skipped))
    for setting, audit in audits.items():
        if audit.violation:
            lines.append(f"WARNING: {setting}: the canary audit shows epsilon >= {audit.epsilon:.3f} "
                         f"({audit.best_attack}), above the accountant's {audit.promised_epsilon:.3f} at delta "
                         f"{audit.delta:.3g}: the DP promise is violated (a bug in the DP training or a wrong "
                         "accountant)")
    return lines


# -- comparison across runs --------------------------------------------------------------------------------

def mean_std(values: Sequence[Optional[float]]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {std:.4f}"


def configuration_key(result: ExperimentResult) -> Tuple:
    """Everything that defines a run except its seed: runs that differ only here are pooled as seeds."""
    config = {k: v for k, v in result.config.items() if k not in ("seed", "run_root")}
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


def _configuration_title(result: ExperimentResult) -> str:
    config = result.config
    subset = f" (n={config['max_samples']})" if config.get("max_samples") else ""
    artifact = config.get("attack_artifact", "keras")
    deployed = "" if artifact == "keras" else f", attacked as {artifact}"
    return f"{config['dataset']}{subset} / {config['model']}, sparsity {config['prune']['sparsity']:g}{deployed}"


def defense_comparison_table(results: Sequence[ExperimentResult], primary: str = "samia") -> str:
    """One Markdown table per (dataset, model, sparsity); a row per full configuration (pruner, defense,
    strength, attack set and every other option), mean ± std over its DISTINCT seeds of test accuracy, real
    sparsity, the primary attack's and the best baseline's metrics, non-adaptive and (where run) adaptive.

    Several result files of one seed and configuration (re-runs) count once: the latest file is used.
    """
    by_config: Dict[Tuple, Dict[int, ExperimentResult]] = defaultdict(dict)
    for result in results:
        by_config[configuration_key(result)][result.config.get("seed")] = result  # later files win
    tables: Dict[str, List[Tuple[Tuple, List[ExperimentResult]]]] = defaultdict(list)
    for key, seeds in by_config.items():
        runs = [seeds[s] for s in sorted(seeds, key=str)]
        tables[_configuration_title(runs[0])].append((key, runs))
    columns = ["pruner", "defense", "attacks", "seeds", "test acc", "sparsity"]
    for who in (primary, "best baseline"):
        for mode in ("", " adaptive"):
            columns += [f"{who}{mode} {label}" for _, label in ATTACK_COLUMNS]
    columns += ["baseline used", "epsilon"]
    lines = []
    for title, rows in tables.items():
        lines += [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        rows.sort(key=lambda item: (_defense_key(item[1][0]) != "none", _defense_key(item[1][0]),
                                    item[1][0].config["prune"]["pruner"]))
        for _, runs in rows:
            first = runs[0]
            cells = [first.config["prune"]["pruner"], _defense_key(first), ",".join(first.attack_names),
                     f"{len(runs)} ({', '.join(str(r.config.get('seed')) for r in runs)})",
                     mean_std([r.pruned.model.test_accuracy for r in runs]),
                     mean_std([r.pruned.model.prunable_sparsity for r in runs])]
            used = set()
            for who in (primary, "best"):
                for setting in ("pruned", "pruned_adaptive"):
                    picked = []
                    for r in runs:
                        audit = r.settings.get(setting)
                        if audit is None:
                            picked.append(None)
                        elif who == primary:
                            attack = audit.attacks.get(primary)
                            picked.append(attack if attack is not None and attack.ran else None)
                        else:
                            best = audit.best("auc", exclude=(primary,))
                            used.add(best.attack if best else None)
                            picked.append(best)
                    cells += [mean_std([m[key] if m else None for m in picked]) for key, _ in ATTACK_COLUMNS]
            cells.append(", ".join(sorted(n for n in used if n)) or "-")
            cells.append(mean_std([(r.pruned.model.defense or {}).get("epsilon") for r in runs]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _defense_key(result: ExperimentResult) -> str:
    return (result.pruned.model.defense or {}).get("key", "none")
