"""Figures from computed results (plotting is kept apart from computing): Figure-1 style divergence histograms
(members vs non-members, original vs pruned) and log-log ROC curves, saved as PNG and logged to TensorBoard.

Matplotlib runs on the Agg backend, so figures render without a display (servers, tests).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from tfprune_mia import fs
from tfprune_mia.io import atomic_path

HISTOGRAM_BINS = 30  # as the paper's divergence_plot notebook


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


SIGNALS = (("true-class confidence p_y", "true_class_confidence"),
           ("true-class sensitivity s_y", "true_class_sensitivity"))
GROUPS = (("members", "tab:red"), ("non-members", "tab:blue"))
# 10 colours x 4 line styles x 6 markers: every curve of one figure gets its own (colour, style, marker) up to
# 240 curves, and the first 10 differ by colour alone. (Matplotlib's default cycle repeats after 10 colours, so
# --attacks=all drew conf and nn_cls alike.)
COLOURS = tuple(f"C{i}" for i in range(10))
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = (None, "o", "s", "^", "v", "D")
LEGEND_FPR = 0.001  # the TPR the legend reports: at 0.1% FPR, the low-FPR regime LiRA argues for


def divergence_figure(values: Mapping[str, Tuple[object, np.ndarray]], title: str):
    """One row per setting (e.g. original / pruned), columns: true-class confidence p_y and sensitivity s_y.
    values[setting] = (signals, is_member). Log-count histograms of members and non-members, each group's
    mean as a dashed vertical line (named in the legend)."""
    plt = _pyplot()
    settings = list(values)
    fig, axes = plt.subplots(len(settings), 2, figsize=(10, 3.4 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
        signals, is_member = values[setting]
        member = np.asarray(is_member).astype(bool)
        for col, (name, attribute) in enumerate(SIGNALS):
            data = np.asarray(getattr(signals, attribute))
            ax = axes[row, col]
            finite = np.isfinite(data)
            bins = np.histogram_bin_edges(data[finite], bins=HISTOGRAM_BINS) if finite.any() else HISTOGRAM_BINS
            for mask, (label, color) in zip((member, ~member), GROUPS):
                subset = data[mask & finite]
                if len(subset):
                    ax.hist(subset, bins=bins, alpha=0.5, label=f"{label} (n={len(subset)})", color=color, log=True)
                    ax.axvline(subset.mean(), color=color, linestyle="--", linewidth=1,
                               label=f"{label} mean {subset.mean():.3g}")
            ax.set_title(f"{setting}: {name}")
            ax.set_xlabel(name)
            ax.set_ylabel("records (log scale)")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curve_style(index: int) -> Dict[str, object]:
    """The distinct matplotlib style of the index-th curve of a figure."""
    colour, rest = index % len(COLOURS), index // len(COLOURS)
    style, rest = rest % len(LINE_STYLES), rest // len(LINE_STYLES)
    return {"color": COLOURS[colour], "linestyle": LINE_STYLES[style], "marker": MARKERS[rest % len(MARKERS)],
            "markevery": 0.1}


def roc_figure(curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], title: str):
    """Log-log ROC curves (LiRA's recommended view: the low-FPR region is where attacks differ), one distinct
    style per attack, legend entries `name (AUC a, TPR@0.1% t)` from the strongest AUC down. `title` should
    name the configuration (dataset, model, pruner, sparsity, defense, setting)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    ranked = []
    for name, (scores, is_member) in curves.items():
        scores, is_member = np.asarray(scores), np.asarray(is_member).astype(int)
        ranked.append((roc_auc_score(is_member, scores), name, scores, is_member))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    for index, (auc, name, scores, is_member) in enumerate(ranked):
        # every ROC point kept, so the highest TPR within the FPR budget is exact (audit.metrics.tpr_at_fpr)
        fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
        low_tpr = float(tpr[fpr <= LEGEND_FPR].max())
        ax.loglog(np.maximum(fpr, 1e-5), np.maximum(tpr, 1e-5), linewidth=1.2, **curve_style(index),
                  label=f"{name} (AUC {auc:.3f}, TPR@{LEGEND_FPR:.1%} {low_tpr:.3f})")
    ax.plot([1e-5, 1], [1e-5, 1], color="0.4", linestyle=(0, (1, 3)), linewidth=0.8, label="chance")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate (log)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # keeps a legend placed outside
    plt.close(fig)
    return buffer.getvalue()


def save_figures(figures: Dict[str, object], directory: Path, tensorboard_dir: Path = None) -> Dict[str, str]:
    """Write each figure as <directory>/<name>.png (atomically) and, if given, as a tf.summary.image in
    tensorboard_dir. Returns name -> PNG path."""
    paths = {}
    encoded = {name: figure_png(fig) for name, fig in figures.items()}
    for name, png in encoded.items():
        path = fs.path(directory) / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        paths[name] = str(path)
    if tensorboard_dir is not None and encoded:
        from tfprune_mia.backend import tf

        writer = tf.summary.create_file_writer(str(tensorboard_dir))
        with writer.as_default():
            for name, png in encoded.items():
                tf.summary.image(name, tf.image.decode_png(png, channels=4)[None], step=0)
        writer.flush()
        writer.close()
    return paths
