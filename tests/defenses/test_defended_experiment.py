"""Defenses inside the experiment flow: sparsity untouched, adaptive vs non-adaptive shadows, caching, tables,
and the keras-tuner search -- on a 600-record digits subset with 1-epoch trainings."""
import dataclasses
import shutil

import numpy as np
import pytest

from tfprune_mia.backend import keras, set_seed
from tfprune_mia.data import load_dataset
from tfprune_mia.defenses import AdvOptions, DefenseConfig, DefenseContext, MCMIAOptions, make_defense
from tfprune_mia.defenses.accounting import default_delta
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
from tfprune_mia.models import build_model
from tfprune_mia.pruning import ADMMOptions, PruneConfig, prune_and_finetune
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.audit.tables import defense_comparison_table, summary_table
from tfprune_mia.training import TrainConfig, fit_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    set_seed(0)
    data = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(data))
    train, dev = (data.x[order[:256]], data.y[order[:256]]), (data.x[order[256:384]], data.y[order[256:384]])
    net = build_model("small_cnn", (8, 8, 1), 10)
    fit_classifier(net, train, dev, TrainConfig(epochs=2, batch_size=32), tmp_path_factory.mktemp("orig"), seed=0)
    return net, train, dev


@pytest.mark.parametrize("defense, pruner", [("none", "l1_unstructured"), ("ppb", "l1_unstructured"),
                                             ("adv", "l1_unstructured"), ("dp", "l1_unstructured"),
                                             ("mcmia", "admm")])
def test_defenses_keep_the_pruned_sparsity(trained, tmp_path, defense, pruner):
    net, train, dev = trained
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    config = TrainConfig(epochs=1, batch_size=32)
    prune = PruneConfig(pruner, 0.7, ADMMOptions(iterations=1)) if pruner == "admm" else PruneConfig(pruner, 0.7)
    options = {"adv": AdvOptions(steps=1), "mcmia": MCMIAOptions(steps=1)}.get(defense)  # a short game
    hooks = make_defense(DefenseConfig(defense, options=options)).hooks(DefenseContext(train, dev, 10, config, 0))
    pruned, _ = prune_and_finetune(clone, prune, train, dev, config, tmp_path, 0, loss_terms=hooks)
    report = sparsity_report(pruned)
    for name, layer in report["layers"].items():
        assert layer["sparsity"] == pytest.approx(0.7, abs=0.01), name
    assert report["prunable_sparsity"] == pytest.approx(0.7, abs=0.005)


def tiny_config(tmp_path, **kwargs):
    kwargs.setdefault("max_samples", 600)
    finetune = TrainConfig(epochs=1, batch_size=32)
    return ExperimentConfig(dataset="digits", seed=3, num_shadows=1, train=TrainConfig(epochs=1, batch_size=32),
                            finetune=finetune, attacks=("conf", "loss"), attack_epochs=1, bootstrap_resamples=0,
                            run_root=str(tmp_path), **kwargs)


@pytest.fixture(scope="module")
def undefended_run(tmp_path_factory):
    """The undefended run of tiny_config, whose originals and undefended shadows every defended run reuses."""
    root = tmp_path_factory.mktemp("undefended")
    run_experiment(tiny_config(root))
    return root


@pytest.fixture
def run_root(tmp_path, undefended_run):
    """A copy of the undefended run: each test trains only its defended models (the cache is keyed by directory)."""
    return shutil.copytree(undefended_run, tmp_path / "runs")


def test_adaptive_attack_uses_defended_shadows_and_shares_the_undefended_ones(run_root, capsys):
    base = tiny_config(run_root)
    plain = run_experiment(base)
    ppb = run_experiment(dataclasses.replace(base, defense=DefenseConfig("ppb"), adaptive=True))
    assert set(ppb.settings) == {"original", "pruned", "pruned_adaptive"}
    assert ppb.pruned.model.defense["key"] == "ppb-4"
    # Non-adaptive shadows are the undefended run's cached models: same signals, same attack inputs.
    pruned_dirs = sorted(p.name for p in base.base_dir.iterdir() if p.name.startswith("l1_unstructured"))
    assert len(pruned_dirs) == 2  # undefended (victim + shadow) and ppb (victim + adaptive shadow)
    assert plain["pruned"]["conf"]["auc"] != ppb["pruned"]["conf"]["auc"]  # defended victim
    assert ppb.original.model.test_accuracy == plain.original.model.test_accuracy
    assert base.base_dir.name == "digits-n600-small_cnn-seed3"
    text = summary_table(ppb)
    assert "defense: ppb-4" in text and "non-adapt / adaptive" in text
    table = defense_comparison_table([plain, ppb])
    assert "| l1_unstructured | none | conf,loss | 1 (3) |" in table
    assert "| l1_unstructured | ppb-4 | conf,loss | 1 (3) |" in table
    assert table.count("### digits (n=600) / small_cnn, sparsity 0.7") == 1
    # The compare_defenses binary prints the same table from the result files on disk.
    from absl import flags

    from tfprune_mia.bin import compare_defenses

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["compare_defenses", f"--results={base.base_dir}/results/*.json"])
    try:
        capsys.readouterr()
        assert compare_defenses.main() == 0
        assert capsys.readouterr().out.strip() == table.strip()
    finally:
        flags.FLAGS.unparse_flags()


def test_dp_epsilon_lands_in_the_run_json(run_root):
    report = run_experiment(dataclasses.replace(tiny_config(run_root), defense=DefenseConfig("dp", 1.0)))
    defense = report.pruned.model.defense
    assert 0 < defense["epsilon"] < float("inf")
    assert defense["delta"] == pytest.approx(default_delta(defense["members"]))
    assert defense["delta"] < 1 / defense["members"]
    assert 0 < defense["epsilon_pld"] < defense["epsilon"] and defense["covers_released_model"] is False
    assert defense["members"] < 600 and defense["steps"] == defense["epochs"] * int(np.ceil(defense["members"] / 32))
    assert "epsilon = " in summary_table(report) and "covers the fine-tuning only" in summary_table(report)
    assert "dp-s1-c1-adam" in defense_comparison_table([report])


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="--adaptive needs a defense"):
        tiny_config(tmp_path, adaptive=True)
    with pytest.raises(ConfigError, match="built on the admm pruner"):
        tiny_config(tmp_path, defense=DefenseConfig("mcmia"))
    with pytest.raises(ConfigError, match="max_samples=5"):
        tiny_config(tmp_path, max_samples=5)


def test_tuner_searches_the_strength_and_logs_hparams(tmp_path, run_root):
    from tfprune_mia.pipeline.tuning import TuneConfig, format_tuning, tune_defense

    config = tiny_config(run_root, defense=DefenseConfig("ppb"))
    summary = tune_defense(config, TuneConfig(0.5, 8.0, max_trials=2, metric="auc", bound=1.0), run_experiment,
                           tmp_path / "tuning")
    assert len(summary["trials"]) == 2
    assert all(0.5 <= row["defense_arg"] <= 8.0 for row in summary["trials"])
    # Trials numbered as keras-tuner prints them; the first one is the defense's default strength (PPB: 4).
    first = {row["trial"]: row for row in summary["trials"]}
    assert set(first) == {1, 2} and first[1]["defense_arg"] == pytest.approx(4.0)
    # bound 1.0: every trial is feasible, so the best is the most accurate one.
    assert summary["best"]["test_accuracy"] == max(row["test_accuracy"] for row in summary["trials"])
    assert list((tmp_path / "tuning" / "tensorboard").rglob("events.out.tfevents*"))
    assert "best feasible" in format_tuning(summary)
