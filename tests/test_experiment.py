"""The whole flow on digits with a tiny budget: caching, reuse of originals, measured sparsity, result JSON."""
import dataclasses

import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.errors import ConfigError
from tfprune_mia.experiment import ExperimentConfig, run_experiment
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

TINY = dict(dataset="digits", num_shadows=1, train=TrainConfig(epochs=3, batch_size=32),
            finetune=TrainConfig(epochs=1, batch_size=32), attacks=("samia", "conf", "entropy", "mentr"),
            attack_epochs=1, signals=SignalConfig(num_perturbations=2))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    config = ExperimentConfig(**TINY, prune=PruneConfig(sparsity=0.7), run_root=str(root))
    return config, run_experiment(config)


def test_report_has_models_attacks_and_provenance(first_run):
    config, report = first_run
    assert report["config"]["prune"]["sparsity"] == 0.7
    assert report["versions"]["tensorflow"].startswith("2.15")
    assert len(report["split_fingerprint"]) > 8
    for setting in ("original", "pruned"):
        assert 0.5 < report["models"][setting]["test_accuracy"] <= 1.0
        for attack in config.attacks:
            metrics = report["attacks"][setting][attack]
            assert 0.0 <= metrics["auc"] <= 1.0 and 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert report["models"]["original"]["sparsity"]["prunable_sparsity"] < 0.01
    assert report["models"]["pruned"]["sparsity"]["prunable_sparsity"] == pytest.approx(0.7, abs=0.01)
    for name, sparsity in report["models"]["pruned"]["layer_sparsity"].items():
        assert sparsity == pytest.approx(0.7, abs=0.01), name


def test_another_sparsity_reuses_the_trained_originals(first_run):
    config, _ = first_run
    originals = sorted(config.base_dir.glob("original-*/*/model.h5"))
    assert len(originals) == 2  # victim + 1 shadow
    before = {path: path.stat().st_mtime_ns for path in originals}
    second = run_experiment(dataclasses.replace(config, prune=PruneConfig(sparsity=0.9)))
    assert {path: path.stat().st_mtime_ns for path in originals} == before
    assert second["models"]["pruned"]["sparsity"]["prunable_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert len(list((config.base_dir / "results").glob("*.json"))) == 2


def test_a_repeated_run_returns_the_stored_result(first_run):
    config, report = first_run
    again = run_experiment(config)
    assert again["attacks"] == report["attacks"]


@pytest.mark.parametrize("overrides,message", [
    (dict(dataset="mnist"), "unknown dataset 'mnist'"),
    (dict(model="resnet50"), "unknown model 'resnet50'"),
    (dict(num_shadows=0), "num_shadows=0"),
    (dict(attacks=("nope",)), "unknown attack 'nope'"),
])
def test_bad_configs_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**{**TINY, **overrides, "run_root": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []
