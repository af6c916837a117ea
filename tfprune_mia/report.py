"""Human-readable summaries of result reports (the binaries print these)."""
from __future__ import annotations

from typing import Dict, List

ATTACK_COLUMNS = (("balanced_accuracy", "acc"), ("auc", "AUC"), ("tpr_at_0.01_fpr", "TPR@1%"))


def _row(cells: List[str], widths: List[int]) -> str:
    return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                     for i, (cell, width) in enumerate(zip(cells, widths)))


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
    divergence = report["divergence"]
    for key, label in (("confidence_gap", "confidence gap"), ("sensitivity_gap", "sensitivity gap"),
                       ("generalisation_gap", "generalisation gap")):
        lines.append(_row([label, f"{divergence['original'][key]:+.4f}", f"{divergence['pruned'][key]:+.4f}"],
                          widths))
    lines.append("")
    header = ["attack"] + [f"{label} {setting}" for setting in ("orig", "pruned") for _, label in ATTACK_COLUMNS]
    widths = [12] + [max(11, len(h)) for h in header[1:]]
    lines.append(_row(header, widths))
    for name in config["attacks"]:
        cells = [name]
        for setting in ("original", "pruned"):
            metrics = report["attacks"][setting][name]
            cells += [f"{metrics[key]:.4f}" for key, _ in ATTACK_COLUMNS]
        lines.append(_row(cells, widths))
    if "result_path" in report:
        lines += ["", f"results: {report['result_path']}"]
    return "\n".join(lines)
