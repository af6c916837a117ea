"""Threat models past the paper, in the pipeline: the attacker holding the dense original (and another released
sparsity) beside the pruned victim, reference models that replay the victim's pipeline, and the deployed TFLite
artefact as the attacked model. A 600-record digits subset with 1-epoch trainings."""
import dataclasses

import numpy as np
import pytest

from tfprune_mia.defenses import DefenseConfig
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
from tfprune_mia.pipeline.roles import SETTINGS, VICTIM, references, shadows
from tfprune_mia.pipeline.stages import Stages
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

PAIR = ("pair_conf", "pair_lr", "pair_lira_offline", "pair_lira_online")


def tiny_config(tmp_path, **kwargs):
    one_epoch = TrainConfig(epochs=1, batch_size=32)
    return ExperimentConfig(**{**dict(dataset="digits", seed=3, num_shadows=1, train=one_epoch, finetune=one_epoch,
                                      attacks=("conf", "lira_online") + PAIR, attack_epochs=1,
                                      bootstrap_resamples=0, max_samples=600, num_reference_models=2,
                                      prune=PruneConfig(sparsity=0.7), released_sparsities=(0.5,),
                                      defense=DefenseConfig("ppb"), adaptive=True, run_root=str(tmp_path)),
                               **kwargs})


@pytest.fixture(scope="module")
def defended_run(tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("runs"))
    return config, run_experiment(config)


def test_pair_attacks_run_on_the_pruned_victim_and_skip_the_original(defended_run):
    _, result = defended_run
    for name in PAIR:
        assert "no pair" in result.original[name].skipped
        for setting in ("pruned", "pruned_adaptive"):
            assert 0.0 <= result[setting][name]["auc"] <= 1.0
    assert result.original["conf"].ran
    assert f"{', '.join(PAIR)} skipped: no pair" in result.table()


def test_the_pair_attacks_see_the_dense_original_and_the_other_release(defended_run):
    config, _ = defended_run
    stages = Stages(config, require_cached=True)
    target = stages.membership(VICTIM, SETTINGS["pruned"])
    dense = stages.membership(VICTIM, SETTINGS["original"]).signals
    assert len(target.signals.versions) == 2
    np.testing.assert_array_equal(target.signals.versions[0].posteriors, dense.posteriors)
    half = stages.model(VICTIM, SETTINGS["pruned"], 0.5).meta()
    assert half["prune_config"]["sparsity"] == 0.5
    assert half["sparsity"]["prunable_sparsity"] == pytest.approx(0.5, abs=0.01)
    reference = stages.reference_signals(SETTINGS["pruned"])
    assert all(len(m.versions) == 2 for m in reference.models)


def stored(config, role, setting, sparsity=None):
    return Stages(config, require_cached=True).model(role, SETTINGS[setting], sparsity).meta()


@pytest.mark.parametrize("setting", ["pruned", "pruned_adaptive"])
@pytest.mark.parametrize("sparsity", [None, 0.5])
def test_reference_and_shadow_models_replay_the_victims_pipeline(defended_run, setting, sparsity):
    """Read every attacker model's stored meta.json: same pruner and sparsity, fine-tuning recipe and (adaptive
    only) defense as the victim; same training recipe for the originals; their data of the victim's size."""
    config, _ = defended_run
    victim = stored(config, VICTIM, setting, sparsity)
    victim_original = stored(config, VICTIM, "original")
    for role in shadows(config.num_shadows) + references(config.num_reference_models):
        meta = stored(config, role, setting, sparsity)
        assert meta["prune_config"] == victim["prune_config"], role
        assert meta["finetune_config"] == victim["finetune_config"], role
        expected_defense = victim["defense"]["config"] if setting == "pruned_adaptive" else {}
        assert meta["defense"]["key"] == (victim["defense"]["key"] if setting == "pruned_adaptive" else "none")
        if setting == "pruned_adaptive":
            assert meta["defense"]["config"] == expected_defense, role
        assert stored(config, role, "original")["train_config"] == victim_original["train_config"], role
    assert victim["defense"]["key"] == "ppb-4"


def test_tens_of_reference_models_are_accepted_and_paired():
    config = dataclasses.replace(tiny_config("unused"), num_reference_models=20)
    stages = Stages(config)
    assert len(stages.reference_roles()) == 20
    with pytest.raises(ConfigError, match="even number"):
        dataclasses.replace(config, num_reference_models=21)


def test_released_sparsities_are_checked():
    with pytest.raises(ConfigError, match="released sparsity 0.7"):
        tiny_config("unused", released_sparsities=(0.7,))


@pytest.fixture(scope="module")
def artefact_runs(defended_run):
    config, keras_result = defended_run
    plain = dataclasses.replace(config, attacks=("conf", "loss"), defense=DefenseConfig(), adaptive=False,
                                released_sparsities=())
    return plain, {kind: run_experiment(dataclasses.replace(plain, attack_artifact=kind))
                   for kind in ("keras", "tflite", "tflite_int8", "tflite_fp16")}


def test_the_float_tflite_artefact_leaks_like_the_keras_model(artefact_runs):
    config, results = artefact_runs
    for setting in ("original", "pruned"):
        keras_conf, flat_conf = results["keras"][setting]["conf"], results["tflite"][setting]["conf"]
        assert flat_conf["auc"] == pytest.approx(keras_conf["auc"], abs=2e-3)
        assert results["tflite"][setting].model.test_accuracy == pytest.approx(
            results["keras"][setting].model.test_accuracy, abs=2e-3)
    stages = Stages(dataclasses.replace(config, attack_artifact="tflite"), require_cached=True)
    flat = stages.membership(VICTIM, SETTINGS["pruned"]).signals
    reference = Stages(config, require_cached=True).membership(VICTIM, SETTINGS["pruned"]).signals
    np.testing.assert_allclose(flat.posteriors, reference.posteriors, atol=1e-5)


def test_quantised_artefacts_report_their_size_accuracy_and_leakage(artefact_runs):
    _, results = artefact_runs
    sizes = {}
    for kind in ("tflite", "tflite_int8", "tflite_fp16"):
        facts = results[kind].pruned.model
        assert facts.footprint["artifact"] == kind and 0.0 < facts.test_accuracy <= 1.0
        assert "keras_test_accuracy" in facts.footprint
        sizes[kind] = facts.footprint["artifact_bytes"]
        assert 0.0 <= results[kind].pruned["conf"]["auc"] <= 1.0
        assert f"artifact {kind}" in results[kind].table()
    assert sizes["tflite_int8"] < sizes["tflite_fp16"] < sizes["tflite"]
    assert "attack_artifact" not in results["keras"].config  # default configurations keep their result keys
