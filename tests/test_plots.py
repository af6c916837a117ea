"""Figures checked through matplotlib's objects (labels, legend entries, line styles), never pixels."""
import numpy as np
import pytest

from tfprune_mia import plots
from tfprune_mia.audit.metrics import tpr_at_fpr
from tfprune_mia.attacks.signals import Signals


def fake_signals(rng, n):
    posteriors = rng.dirichlet(np.ones(3), size=n)
    return Signals(posteriors=posteriors, sensitivity=rng.random((n, 3)), labels=rng.integers(0, 3, n))


@pytest.fixture
def divergence():
    rng = np.random.default_rng(0)
    is_member = np.arange(200) % 2
    fig = plots.divergence_figure({"original": (fake_signals(rng, 200), is_member),
                                   "pruned": (fake_signals(rng, 200), is_member)}, "digits/small_cnn")
    yield fig
    plots._pyplot().close(fig)


def test_divergence_histograms_have_axis_labels_and_explain_every_line(divergence):
    axes = divergence.axes
    assert len(axes) == 4
    for ax in axes:
        assert ax.get_xlabel() in ("true-class confidence p_y", "true-class sensitivity s_y")
        assert ax.get_ylabel() == "records (log scale)"
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert any(entry.startswith("members (n=100)") for entry in legend), legend
        assert any(entry.startswith("non-members (n=100)") for entry in legend), legend
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 2
        for line in dashed:  # the dashed means are in the legend, named
            assert line.get_label() in legend and " mean " in line.get_label()


def roc_curves(count):
    rng = np.random.default_rng(1)
    is_member = np.arange(1000) % 2
    return {f"attack_{i:02d}": (rng.normal(size=1000) + is_member * (i / count), is_member) for i in range(count)}


def test_seventeen_roc_curves_have_distinct_styles_and_metrics_in_the_legend():
    from sklearn.metrics import roc_auc_score

    curves = roc_curves(17)
    fig = plots.roc_figure(curves, "digits/small_cnn l1_unstructured @ 0.7, defense none: pruned victim")
    try:
        (ax,) = fig.axes
        assert ax.get_title() == "digits/small_cnn l1_unstructured @ 0.7, defense none: pruned victim"
        assert ax.get_xlabel() and ax.get_ylabel()
        lines = [line for line in ax.get_lines() if line.get_label().startswith("attack_")]
        assert len(lines) == 17
        styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
        assert len(styles) == 17
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert "chance" in legend
        entries = [entry for entry in legend if entry.startswith("attack_")]
        aucs = []
        for entry in entries:
            name = entry.split(" ")[0]
            scores, is_member = curves[name]
            auc = roc_auc_score(is_member, scores)
            assert entry == f"{name} (AUC {auc:.3f}, TPR@0.1% {tpr_at_fpr(scores, is_member, 0.001):.3f})"
            aucs.append(auc)
        assert aucs == sorted(aucs, reverse=True)  # strongest attack first
    finally:
        plots._pyplot().close(fig)


def test_curve_styles_are_distinct_well_beyond_the_colour_cycle():
    styles = [tuple(sorted(plots.curve_style(i).items(), key=str)) for i in range(240)]
    assert len(set(styles)) == 240
    assert len({plots.curve_style(i)["color"] for i in range(10)}) == 10


def test_figures_are_saved_with_the_outside_legend(tmp_path):
    fig = plots.roc_figure(roc_curves(3), "title")
    paths = plots.save_figures({"roc": fig}, tmp_path)
    assert open(paths["roc"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
