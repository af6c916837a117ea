"""Figures from computed results (plotting is kept apart from computing): Figure-1 style divergence histograms
(members vs non-members, original vs pruned) and log-log ROC curves, saved as PNG and logged to TensorBoard.

Matplotlib runs on the Agg backend, so figures render without a display (servers, tests).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from tfprune_mia.io import atomic_path

HISTOGRAM_BINS = 30  # as the paper's divergence_plot notebook


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def divergence_figure(values: Mapping[str, Tuple[np.ndarray, np.ndarray]], title: str):
    """One row per setting (e.g. original / pruned), columns: true-class confidence p_y and sensitivity s_y.
    values[setting] = (signals, is_member). Log-count histograms with the two means as vertical lines."""
    plt = _pyplot()
    settings = list(values)
    fig, axes = plt.subplots(len(settings), 2, figsize=(10, 3.2 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
        signals, is_member = values[setting]
        member = np.asarray(is_member).astype(bool)
        for col, (name, data) in enumerate((("confidence p_y", signals.true_class_confidence),
                                            ("sensitivity s_y", signals.true_class_sensitivity))):
            ax = axes[row, col]
            finite = np.isfinite(data)
            bins = np.histogram_bin_edges(data[finite], bins=HISTOGRAM_BINS) if finite.any() else HISTOGRAM_BINS
            for mask, label, color in ((member, "members", "tab:red"), (~member, "non-members", "tab:blue")):
                subset = data[mask & finite]
                if len(subset):
                    ax.hist(subset, bins=bins, alpha=0.5, label=label, color=color, log=True)
                    ax.axvline(subset.mean(), color=color, linestyle="--", linewidth=1)
            ax.set_title(f"{setting}: {name}")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def roc_figure(curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], title: str):
    """Log-log ROC curves (LiRA's recommended view: the low-FPR region is where attacks differ)."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (scores, is_member) in curves.items():
        fpr, tpr, _ = roc_curve(np.asarray(is_member).astype(int), scores)
        ax.loglog(np.maximum(fpr, 1e-5), np.maximum(tpr, 1e-5), label=name, linewidth=1)
    ax.plot([1e-5, 1], [1e-5, 1], "k:", linewidth=0.8)
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def save_figures(figures: Dict[str, object], directory: Path, tensorboard_dir: Path = None) -> Dict[str, str]:
    """Write each figure as <directory>/<name>.png (atomically) and, if given, as a tf.summary.image in
    tensorboard_dir. Returns name -> PNG path."""
    paths = {}
    encoded = {name: figure_png(fig) for name, fig in figures.items()}
    for name, png in encoded.items():
        path = Path(directory) / f"{name}.png"
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
