"""The study report's figures: attack metric vs sparsity per pruner, the privacy-utility frontier, log-log ROC
per attack and the divergence gaps, one set per (dataset, model) section, as PNG."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from tfprune_mia.audit.study_report import Configuration, StudyReport
from tfprune_mia.audit.tables import METRIC_LABELS
from tfprune_mia import fs
from tfprune_mia.io import atomic_path
from tfprune_mia.plots import _pyplot, figure_png, roc_figure

SETTING_STYLE = {"pruned": "-", "pruned_adaptive": ":"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        tmp.write_bytes(figure_png(fig))
    return str(path)


def _grid(count: int):
    plt = _pyplot()
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _titled(fig, title: str):
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _families(configurations: List[Configuration]) -> Dict[Tuple[str, str], List[Configuration]]:
    families: Dict[Tuple[str, str], List[Configuration]] = defaultdict(list)
    for configuration in configurations:
        families[(configuration.pruner, configuration.defense)].append(configuration)
    return {key: sorted(members, key=lambda c: c.sparsity) for key, members in families.items()}


def _rows(report: StudyReport, section: str):
    return {(r["pruner"], r["defense"], r["sparsity"], r["setting"], r["attack"]): r
            for r in report.summary if r["section"] == section}


def metric_vs_sparsity(report: StudyReport, section: str, configurations: List[Configuration]):
    metric, rows = report.metric, _rows(report, section)
    attacks = list(dict.fromkeys(a for c in configurations for a in c.attacks))
    fig, axes = _grid(len(attacks))
    for ax, attack in zip(axes, attacks):
        for (pruner, defense), members in _families(configurations).items():
            original = rows.get((pruner, defense, members[0].sparsity, "original", attack))
            for setting in members[0].settings[1:]:
                points = [(0.0, original)] + [(c.sparsity, rows.get((pruner, defense, c.sparsity, setting, attack)))
                                              for c in members]
                points = [(s, r) for s, r in points if r is not None and f"{metric}_mean" in r]
                if not points:
                    continue
                label = f"{pruner}, {defense}" + (", adaptive attack" if setting == "pruned_adaptive" else "")
                ax.errorbar([s for s, _ in points], [r[f"{metric}_mean"] for _, r in points],
                            yerr=[r[f"{metric}_std"] for _, r in points], marker="o", capsize=3,
                            linestyle=SETTING_STYLE[setting], label=label)
        ax.axhline(0.5 if metric == "auc" else 0.0, color="grey", linewidth=0.8, linestyle=":")
        _label(ax, "sparsity (0 = original model)", f"{METRIC_LABELS[metric]} (mean ± std over seeds)", attack)
    return _titled(fig, f"{section}: {METRIC_LABELS[metric]} vs sparsity")


def frontier(report: StudyReport, section: str, configurations: List[Configuration]):
    metric, rows = report.metric, _rows(report, section)
    attacks = list(dict.fromkeys(a for c in configurations for a in c.attacks))
    fig, axes = _grid(len(attacks))
    for ax, attack in zip(axes, attacks):
        drew_original = False
        for (pruner, defense), members in _families(configurations).items():
            original = rows.get((pruner, defense, members[0].sparsity, "original", attack))
            if original is not None and not drew_original:
                ax.plot(original["test_accuracy_mean"], original[f"{metric}_mean"], "k*", markersize=14,
                        label="original", zorder=5)
                drew_original = True
            for setting in members[0].settings[1:]:
                points = [(c.sparsity, rows.get((pruner, defense, c.sparsity, setting, attack))) for c in members]
                points = [(s, r) for s, r in points if r is not None and f"{metric}_mean" in r]
                if not points:
                    continue
                x = [r["test_accuracy_mean"] for _, r in points]
                y = [r[f"{metric}_mean"] for _, r in points]
                line, = ax.plot(x, y, marker="o", linestyle="--" if defense != "none" else SETTING_STYLE[setting],
                                label=f"{pruner}, {defense}" + (", adaptive" if setting == "pruned_adaptive" else ""))
                for s, xi, yi in zip([s for s, _ in points], x, y):
                    ax.annotate(f"{s:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points",
                                color=line.get_color())
        _label(ax, "test accuracy (mean over seeds)", f"{METRIC_LABELS[metric]} (mean over seeds)",
               f"{attack} (point labels: sparsity)")
    return _titled(fig, f"{section}: privacy-utility frontier; lower right is better")


def roc_figures(section: str, configurations: List[Configuration]) -> Dict[str, object]:
    """Per attack: the original and every pruned configuration, scores of all seeds pooled."""
    figures = {}
    attacks = list(dict.fromkeys(a for c in configurations for a in c.attacks))
    for attack in attacks:
        curves = {}
        for configuration in configurations:
            for setting in configuration.settings:
                pooled = [s[setting] for s in configuration.scores if setting in s and attack in s[setting].scores]
                if not pooled or len(pooled) != len(configuration.runs):
                    continue
                name = "original" if setting == "original" else \
                    f"{configuration.pruner}@{configuration.sparsity:g} {configuration.defense}" + \
                    (" adaptive" if setting == "pruned_adaptive" else "")
                if name in curves:
                    continue
                curves[name] = (np.concatenate([p.scores[attack] for p in pooled]),
                                np.concatenate([p.is_member for p in pooled]))
        if curves:
            figures[f"roc_{_slug(section)}_{attack}"] = roc_figure(
                curves, f"{section}, {attack} (seeds pooled)")
    return figures


def divergence_gaps(section: str, configurations: List[Configuration]):
    """Members-minus-non-members gaps of confidence, sensitivity and accuracy vs sparsity (mean over seeds)."""
    keys = (("confidence_gap", "confidence gap"), ("sensitivity_gap", "sensitivity gap"),
            ("generalisation_gap", "train - test accuracy gap"))
    fig, axes = _grid(len(keys))
    for ax, (key, label) in zip(axes, keys):
        for (pruner, defense), members in _families(configurations).items():
            original = [r.original.divergence.get(key) for r in members[0].runs]
            points = [(0.0, original)] + [(c.sparsity, [r.pruned.divergence.get(key) for r in c.runs])
                                          for c in members if c.runs[0].pruned is not None]
            points = [(s, [v for v in values if v is not None]) for s, values in points]
            points = [(s, values) for s, values in points if values]
            if points:
                ax.errorbar([s for s, _ in points], [np.mean(v) for _, v in points],
                            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0.0 for _, v in points], marker="o",
                            capsize=3, label=f"{pruner}, {defense}")
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        _label(ax, "sparsity (0 = original model)", f"{label} (members - non-members)", label)
    return _titled(fig, f"{section}: prediction divergence between members and non-members")


def draw_figures(report: StudyReport, directory: Path) -> Dict[str, str]:
    """Every figure of every section as <directory>/<name>.png; each configuration's own divergence histograms
    (first seed, drawn by the run itself) are copied beside them. Returns name -> path."""
    sections: Dict[str, List[Configuration]] = defaultdict(list)
    for configuration in report.configurations:
        sections[configuration.section].append(configuration)
    paths = {}
    for section, configurations in sections.items():
        slug = _slug(section)
        figures = {f"{report.metric}_vs_sparsity_{slug}": metric_vs_sparsity(report, section, configurations),
                   f"frontier_{slug}": frontier(report, section, configurations),
                   f"divergence_gaps_{slug}": divergence_gaps(section, configurations)}
        figures.update(roc_figures(section, configurations))
        for name, fig in figures.items():
            paths[name] = _save(fig, directory / f"{name}.png")
        for configuration in configurations:
            source = configuration.runs[0].figures.get("divergence")
            if source and fs.path(source).is_file():
                name = f"divergence_{slug}_{_slug(configuration.pruner)}_{configuration.sparsity:g}_" \
                       f"{_slug(configuration.defense)}"
                target = directory / "divergence" / f"{name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(fs.path(source).read_bytes())  # the run root may be a bucket
                paths[name] = str(target)
    return paths
