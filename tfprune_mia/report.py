"""Human-readable summaries of result reports (the binaries print these)."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

ATTACK_COLUMNS = (("balanced_accuracy", "acc"), ("auc", "AUC"), ("tpr_at_0.01_fpr", "TPR@1%"))


def _row(cells: List[str], widths: List[int]) -> str:
    return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                     for i, (cell, width) in enumerate(zip(cells, widths)))


def _interval_lines(report: Dict) -> List[str]:
    """AUC with its bootstrap 95% interval, and TPR at 0.1% FPR, per attack and setting."""
    lines = []
    for setting in ("original", "pruned"):
        for name, metrics in report["attacks"].get(setting, {}).items():
            interval = metrics.get("ci95", {}).get("auc")
            if interval:
                lines.append(f"  {setting:8s} {name:14s} AUC {metrics['auc']:.4f} [{interval[0]:.4f}, "
                             f"{interval[1]:.4f}]  TPR@0.1% {metrics['tpr_at_0.001_fpr']:.4f}")
    return ["", "bootstrap 95% intervals:"] + lines if lines else []


def _tf_privacy_lines(report: Dict) -> List[str]:
    """TF Privacy's own suite on the same target signals (its protocol: attacks fitted on target data)."""
    suite = report.get("tf_privacy") or {}
    if not suite:
        return []
    reasons = {results["skipped"] for results in suite.values() if "skipped" in results}
    if len(reasons) == 1 and all("skipped" in results for results in suite.values()):
        return ["", f"TF Privacy MIA suite: skipped ({reasons.pop()})"]  # one line, not one per setting
    lines = ["", "TF Privacy MIA suite (AUC / attacker advantage):"]
    for setting, results in suite.items():
        if "skipped" in results:
            lines.append(f"  {setting}: skipped ({results['skipped']})")
            continue
        lines.append(f"  {setting}: " + ", ".join(f"{name} {r['auc']:.4f} / {r['advantage']:.4f}"
                                                 for name, r in results.items()))
    return lines


def summary_table(report: Dict) -> str:
    config = report["config"]
    prune, shadow = config["prune"], config["shadow_prune"]
    shadow_text = "same as victim" if shadow == prune else f"{shadow['pruner']} @ {shadow['sparsity']:g}"
    lines = [f"{config['dataset']} / {config['model']}: {prune['pruner']} @ sparsity {prune['sparsity']:g} "
             f"({prune['schedule']}); {config['num_shadows']} shadows (pruned: {shadow_text}); "
             f"seed {config['seed']}", ""]
    models = report["models"]
    widths = [26, 10, 10]
    lines.append(_row(["model", "original", "pruned"], widths))
    for key, label in (("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy")):
        lines.append(_row([label, f"{models['original'][key]:.4f}", f"{models['pruned'][key]:.4f}"], widths))
    lines.append(_row(["sparsity (prunable weights)", f"{models['original']['sparsity']['prunable_sparsity']:.4f}",
                       f"{models['pruned']['sparsity']['prunable_sparsity']:.4f}"], widths))
    if "footprint" in models["pruned"]:
        before, after = models["pruned"]["original_footprint"], models["pruned"]["footprint"]
        for key, label, scale, digits in (("params", "parameters (stored)", 1, 0), ("flops", "MFLOPs", 1e-6, 2),
                                          ("h5_gzip_bytes", "gzip size (KB)", 1 / 1024, 0)):
            lines.append(_row([label, f"{before[key] * scale:.{digits}f}", f"{after[key] * scale:.{digits}f}"],
                              widths))
    divergence = report["divergence"]
    for key, label in (("confidence_gap", "confidence gap"), ("sensitivity_gap", "sensitivity gap"),
                       ("generalisation_gap", "generalisation gap")):
        lines.append(_row([label, f"{divergence['original'][key]:+.4f}", f"{divergence['pruned'][key]:+.4f}"],
                          widths))
    lines.append("")
    header = ["attack"] + [f"{label} {setting}" for setting in ("orig", "pruned") for _, label in ATTACK_COLUMNS]
    widths = [12] + [max(11, len(h)) for h in header[1:]]
    lines.append(_row(header, widths))
    skipped = {}
    for name in config["attacks"]:
        cells = [name]
        for setting in ("original", "pruned"):
            metrics = report["attacks"][setting][name]
            if "skipped" in metrics:  # an optional package is missing: say so once, below the table
                skipped[name] = metrics["skipped"]
                cells += ["skipped"] * len(ATTACK_COLUMNS)
            else:
                cells += [f"{metrics[key]:.4f}" for key, _ in ATTACK_COLUMNS]
        lines.append(_row(cells, widths))
    for name, message in skipped.items():
        lines.append(f"{name} skipped: {message}")
    lines += _interval_lines(report)
    lines += _tf_privacy_lines(report)
    lines += _defense_lines(report)
    if "result_path" in report:
        lines += ["", f"results: {report['result_path']}"]
    return "\n".join(lines)


def _defense_lines(report: Dict) -> List[str]:
    """The defense and, with --adaptive, the attacks trained on defended shadows beside the non-adaptive ones."""
    defense = report["models"].get("pruned", {}).get("defense")
    if not defense or defense.get("key") == "none":
        return []
    lines = ["", f"defense: {defense['key']}"]
    if "epsilon" in defense:
        lines.append(f"  DP fine-tuning: epsilon = {defense['epsilon']:.3f} at delta = {defense['delta']:.3g} "
                     f"(sigma {defense['noise_multiplier']:.3f}, clip {defense['l2_norm_clip']:g}, "
                     f"{defense['steps']} steps)")
    if "pruned_adaptive" in report["attacks"]:
        lines.append("  attack          " + "  ".join(f"{label} non-adapt / adaptive" for _, label in ATTACK_COLUMNS))
        for name, adaptive in report["attacks"]["pruned_adaptive"].items():
            plain = report["attacks"]["pruned"].get(name, {})
            if "skipped" in adaptive or "skipped" in plain:
                continue
            lines.append(f"  {name:14s}  " + "  ".join(f"{plain[key]:.4f} / {adaptive[key]:.4f}"
                                                      for key, _ in ATTACK_COLUMNS))
    return lines


# -- defense comparison across runs ------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {std:.4f}"


def _best_baseline(attacks: Dict, primary: str) -> Tuple[Optional[str], Dict]:
    """The strongest non-primary attack by AUC (the attacker would pick it); (None, {}) if there is none."""
    candidates = {name: m for name, m in attacks.items() if name != primary and "skipped" not in m}
    if not candidates:
        return None, {}
    name = max(candidates, key=lambda n: candidates[n]["auc"])
    return name, candidates[name]


def _configuration(report: Dict) -> str:
    config = report["config"]
    prune = config["prune"]
    subset = f" (n={config['max_samples']})" if config.get("max_samples") else ""
    return f"{config['dataset']}{subset} / {config['model']}, sparsity {prune['sparsity']:g}"


def defense_comparison_table(reports: Sequence[Dict], primary: str = "samia") -> str:
    """One Markdown table per configuration (dataset, model, sparsity): a row per (pruner, defense, strength),
    mean ± std over seeds of test accuracy, real sparsity, the primary attack's and the best baseline's
    balanced accuracy / AUC / TPR@1%FPR, non-adaptive and (where run) adaptive, and DP's epsilon."""
    groups: Dict[str, Dict[Tuple, List[Dict]]] = defaultdict(lambda: defaultdict(list))
    for report in reports:
        config = report["config"]
        defense = report["models"]["pruned"].get("defense") or {"key": "none"}
        row = (config["prune"]["pruner"], defense["key"])
        groups[_configuration(report)][row].append(report)
    columns = ["pruner", "defense", "seeds", "test acc", "sparsity"]
    for who in (primary, "best baseline"):
        for mode in ("", " adaptive"):
            columns += [f"{who}{mode} {label}" for _, label in ATTACK_COLUMNS]
    columns += ["baseline used", "epsilon"]
    lines = []
    for configuration, rows in groups.items():
        lines += [f"### {configuration}", "", "| " + " | ".join(columns) + " |",
                  "|" + "|".join("---" for _ in columns) + "|"]
        for (pruner, defense), runs in sorted(rows.items(), key=lambda item: (item[0][1] != "none", item[0])):
            cells = [pruner, defense, str(len({r["config"]["seed"] for r in runs})),
                     _mean_std([r["models"]["pruned"]["test_accuracy"] for r in runs]),
                     _mean_std([r["models"]["pruned"]["sparsity"]["prunable_sparsity"] for r in runs])]
            used = set()
            for who in (primary, "best"):
                for setting in ("pruned", "pruned_adaptive"):
                    picked = []
                    for r in runs:
                        attacks = r["attacks"].get(setting)
                        if attacks is None:
                            picked.append(None)
                        elif who == primary:
                            picked.append(attacks.get(primary) if "skipped" not in attacks.get(primary, {"skipped": 1})
                                          else None)
                        else:
                            name, metrics = _best_baseline(attacks, primary)
                            used.add(name)
                            picked.append(metrics or None)
                    cells += [_mean_std([m[key] if m else None for m in picked]) for key, _ in ATTACK_COLUMNS]
            cells.append(", ".join(sorted(n for n in used if n)) or "-")
            cells.append(_mean_std([r["models"]["pruned"].get("defense", {}).get("epsilon") for r in runs]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
