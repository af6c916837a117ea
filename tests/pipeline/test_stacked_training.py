"""--stacked_training=auto: the attacker's original shadows and reference models trained as one stacked model,
stored as ordinary per-model stages; the victim and everything cached with it off keep their keys."""
import dataclasses

import numpy as np
import pytest

from tfprune_mia import ExperimentConfig, run_experiment
from tfprune_mia.pipeline.roles import SETTINGS, VICTIM
from tfprune_mia.pipeline.stages import Stages
from tfprune_mia.training import TrainConfig, evaluate_accuracy

ORIGINAL = SETTINGS["original"]
slow = pytest.mark.slow


def config_for(root, stacked, **overrides):
    return ExperimentConfig(**{**dict(
        num_shadows=3, num_reference_models=2, attacks=("conf", "lira_online"), attack_epochs=2,
        bootstrap_resamples=0, train=TrainConfig(epochs=6, batch_size=32), finetune=TrainConfig(epochs=1),
        run_root=str(root), stacked_training=stacked), **overrides})


def attacker_roles(stages):
    return stages.shadow_roles() + stages.reference_roles()


def original_stores(stages):
    return {role.name: stages.store(stages.spec(role, ORIGINAL)) for role in stages.all_roles()}


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked")
    stacked = config_for(root, "auto")
    plain = config_for(root, "off")
    return root, (stacked, run_experiment(stacked)), (plain, run_experiment(plain))


def test_a_tiny_stacked_run_stores_every_attacker_model_as_an_ordinary_stage(tmp_path):
    config = config_for(tmp_path, "auto", num_shadows=2, attacks=("conf",), attack_epochs=1,
                        train=TrainConfig(epochs=2, batch_size=64))
    result = run_experiment(config)
    assert set(result.settings) == {"original", "pruned"}
    stages = Stages(config)
    for role in stages.shadow_roles():
        meta = stages.store(stages.spec(role, ORIGINAL)).meta()
        assert meta["stacked_training"] == {"models": 2, "members": ["shadow_0", "shadow_1"]}
        assert meta["kind"] == "original" and meta["epochs_run"] == 2
        assert stages.model(role, SETTINGS["pruned"]).load().name == config.model  # pruned from it as usual


@slow
def test_stacked_run_attacks_sanely_and_stores_ordinary_models(both_runs):
    _, (config, result), _ = both_runs
    for audit in result.settings.values():
        for name, attack in audit.ran.items():
            assert 0.4 < attack.metrics["auc"] < 1.0, (name, attack.metrics["auc"])
    stages = Stages(config)
    for role in attacker_roles(stages):
        assert stages.stacked_original(role)
        store = stages.store(stages.spec(role, ORIGINAL))
        meta = store.meta()
        assert meta["stacked_training"]["models"] >= 1 and role.name in meta["stacked_training"]["members"]
        net = store.load()  # an ordinary Keras model of the configured architecture
        assert net.name == config.model and net.input_shape[1:] == stages.dataset.input_shape
        part = stages.part(role)
        assert evaluate_accuracy(net, *stages.arrays(part.test)) == pytest.approx(meta["test_accuracy"])
    assert not stages.stacked_original(VICTIM)
    assert "stacked_training" not in stages.model(VICTIM, ORIGINAL).meta()


@slow
def test_off_keeps_every_key_and_the_victim_is_shared(both_runs):
    root, (stacked_config, _), (plain_config, _) = both_runs
    stacked, plain = original_stores(Stages(stacked_config)), original_stores(Stages(plain_config))
    assert stacked["victim"].directory == plain["victim"].directory  # trained once, reused
    assert all(stacked[name].directory != plain[name].directory for name in stacked if name != "victim")
    assert plain["shadow_0"].directory.parent.name == plain_config.original_key()
    assert len({p.stem for p in (root / plain_config.base_dir.name / "results").glob("*.json")}) == 2


@slow
def test_stacked_shadows_match_the_one_by_one_accuracy_distribution(both_runs):
    _, (stacked_config, _), (plain_config, _) = both_runs
    accuracy = {}
    for label, config in (("stacked", stacked_config), ("plain", plain_config)):
        stages = Stages(config)
        accuracy[label] = np.array([stages.store(stages.spec(role, ORIGINAL)).meta()["test_accuracy"]
                                    for role in attacker_roles(stages)])
    assert accuracy["stacked"].min() > 0.6 and accuracy["plain"].min() > 0.6, accuracy
    assert abs(accuracy["stacked"].mean() - accuracy["plain"].mean()) < 0.05, accuracy
    assert abs(accuracy["stacked"].std() - accuracy["plain"].std()) < 0.05, accuracy


@slow
def test_finished_stacked_models_are_reused_and_a_lost_one_alone_retrained(both_runs):
    root, (config, _), _ = both_runs
    stages = Stages(config)
    stores = original_stores(stages)
    before = {name: store.model_path.stat().st_mtime_ns for name, store in stores.items()}
    # A kill between shadow_1's model.h5 and its meta.json completion marker: that stage counts as unfinished.
    stores["shadow_1"].meta_path.unlink()
    rerun = dataclasses.replace(config, attack_epochs=3)  # another result: the models are needed again
    run_experiment(rerun)
    after = {name: store.model_path.stat().st_mtime_ns for name, store in original_stores(Stages(rerun)).items()}
    assert [name for name in before if after[name] != before[name]] == ["shadow_1"]
    assert stores["shadow_1"].meta()["stacked_training"]["members"] == ["shadow_1"]


def test_an_unsupported_architecture_falls_back_to_one_by_one(tmp_path, caplog):
    config = config_for(tmp_path, "auto", model="mobilenet_v2", num_shadows=1, attacks=("conf",))
    stages = Stages(config)
    # The absl logger's own level too: a binary run earlier in this process (--verbosity=-1) leaves it at WARNING.
    with caplog.at_level("INFO", logger="absl"):
        assert not stages.stacked_original(stages.shadow_roles()[0])
    assert "stacked training off for this run" in caplog.text
    assert stages.store(stages.spec(stages.shadow_roles()[0], ORIGINAL)).directory.parent.name == \
        config.original_key()
