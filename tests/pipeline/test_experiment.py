"""The whole flow on digits with a tiny budget: caching, reuse of originals, measured sparsity, result JSON."""
import dataclasses

import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import read_json, write_json
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
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


def test_result_has_models_attacks_and_provenance(first_run):
    config, result = first_run
    assert isinstance(result, ExperimentResult)
    assert result.config["prune"]["sparsity"] == 0.7
    assert result.versions["tensorflow"].startswith("2.15")
    assert len(result.split_fingerprint) > 8
    for setting in ("original", "pruned"):
        assert 0.5 < result[setting].model.test_accuracy <= 1.0
        for attack in config.attacks:
            metrics = result[setting][attack]
            assert 0.0 <= metrics["auc"] <= 1.0 and 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert result.original.model.prunable_sparsity < 0.01
    assert result.pruned.model.prunable_sparsity == pytest.approx(0.7, abs=0.01)
    for name, sparsity in result.pruned.model.layer_sparsity.items():
        assert sparsity == pytest.approx(0.7, abs=0.01), name


def test_the_stored_json_loads_back_to_an_equal_result(first_run):
    _, result = first_run
    again = ExperimentResult.load(result.path)
    assert again == result
    assert again.to_dict() == read_json(result.path)
    rows = again.rows()
    assert {(row["setting"], row["attack"]) for row in rows} == {
        (s, a) for s in ("original", "pruned") for a in first_run[0].attacks}


def test_result_files_of_an_unknown_format_are_refused(tmp_path, first_run):
    data = read_json(first_run[1].path)
    data["format_version"] = 99
    write_json(tmp_path / "future.json", data)
    with pytest.raises(CheckpointError, match="incompatible tfprune_mia version .format 99.*delete that file"):
        ExperimentResult.load(tmp_path / "future.json")


def test_another_sparsity_reuses_the_trained_originals(first_run):
    config, _ = first_run
    originals = sorted(config.base_dir.glob("original-*/*/model.h5"))
    assert len(originals) == 2  # victim + 1 shadow
    before = {path: path.stat().st_mtime_ns for path in originals}
    second = run_experiment(dataclasses.replace(config, prune=PruneConfig(sparsity=0.9)))
    assert {path: path.stat().st_mtime_ns for path in originals} == before
    assert second.pruned.model.prunable_sparsity == pytest.approx(0.9, abs=0.01)
    assert len(list((config.base_dir / "results").glob("*.json"))) == 2


def test_a_repeated_run_returns_the_stored_result(first_run):
    config, result = first_run
    again = run_experiment(config)
    assert again == result


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


def test_attacks_on_the_unchanged_original_are_reused_across_configurations(first_run):
    config, result = first_run
    attack_files = sorted((config.base_dir / "attacks").glob("*.json"))
    # Two finished configurations share the original setting: its attacks were computed once.
    original = [p for p in attack_files if p.stat().st_mtime_ns == min(q.stat().st_mtime_ns for q in attack_files)]
    assert attack_files and original
    stamps = {path: path.stat().st_mtime_ns for path in attack_files}
    third = run_experiment(dataclasses.replace(config, prune=PruneConfig(sparsity=0.5)))
    after = sorted((config.base_dir / "attacks").glob("*.json"))
    assert {p: p.stat().st_mtime_ns for p in attack_files} == stamps  # nothing rewritten
    assert len(after) == len(attack_files) + len(config.attacks)  # only the new pruned setting's attacks
    assert third.original.to_dict()["attacks"] == result.original.to_dict()["attacks"]
