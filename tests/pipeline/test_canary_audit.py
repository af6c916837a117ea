"""Canaries in the pipeline: only the victim trains on its IN canaries, caches without canaries keep their keys,
and every attacked setting gets a canary audit in the typed result, the JSON and the table."""
import dataclasses

import numpy as np
import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.audit.privacy import PrivacyAudit
from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.data.canaries import canary_records
from tfprune_mia.io import read_json
from tfprune_mia.pipeline import stages as stages_module
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
from tfprune_mia.pipeline.roles import SETTINGS, VICTIM, Role
from tfprune_mia.pipeline.stages import Stages
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

TINY = dict(dataset="digits", num_shadows=1, train=TrainConfig(epochs=2, batch_size=32),
            finetune=TrainConfig(epochs=1, batch_size=32), attacks=("conf", "loss", "lira_offline"),
            attack_epochs=1, signals=SignalConfig(num_perturbations=2), bootstrap_resamples=0,
            prune=PruneConfig(sparsity=0.7))


def test_keys_and_stored_config_are_unchanged_without_canaries(tmp_path):
    plain = ExperimentConfig(**TINY, run_root=str(tmp_path))
    with_canaries = dataclasses.replace(plain, canaries=100)
    assert "canaries" not in plain.to_dict() and with_canaries.to_dict()["canaries"] == 100
    assert plain.result_key() != with_canaries.result_key()
    # Models are keyed by directory: the shadows' stay, only the victim's moves.
    assert plain.original_key() == with_canaries.original_key()
    assert plain.pruned_key(plain.prune) == with_canaries.pruned_key(plain.prune)
    plain_stages, canary_stages = Stages(plain), Stages(with_canaries)
    for setting in (SETTINGS["original"], SETTINGS["pruned"]):
        shadow = Role("shadow", 0)
        assert (plain_stages.store(plain_stages.spec(shadow, setting)).directory
                == canary_stages.store(canary_stages.spec(shadow, setting)).directory)
        assert (plain_stages.store(plain_stages.spec(VICTIM, setting)).directory
                != canary_stages.store(canary_stages.spec(VICTIM, setting)).directory)
    assert ExperimentConfig.from_dict(with_canaries.to_dict(), str(tmp_path)) == with_canaries


def test_canaries_come_from_the_shadow_half_and_are_saved_beside_the_split(tmp_path):
    stages = Stages(ExperimentConfig(**TINY, canaries=300, run_root=str(tmp_path)))
    canaries = stages.canaries
    victim = stages.split.victim
    shadow_half = np.concatenate([stages.split.shadows[0].train, stages.split.shadows[0].dev,
                                  stages.split.shadows[0].test])
    assert np.isin(canaries.indices, shadow_half).all()
    assert not np.isin(canaries.indices, np.concatenate([victim.train, victim.dev, victim.test])).any()
    assert (tmp_path / stages.config.base_dir.name / "canaries300-mislabel.npz").exists()
    again = Stages(stages.config).canaries
    assert again.fingerprint() == canaries.fingerprint()
    x, y = stages.training_set(VICTIM, victim)
    assert len(y) == len(victim.train) + canaries.included.sum()
    shadow = stages.split.shadows[0]
    assert len(stages.training_set(Role("shadow", 0), shadow)[1]) == len(shadow.train)


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("runs")
    seen = []
    original_fit, original_prune = stages_module.fit_classifier, stages_module.prune_and_finetune_detailed

    def fit(net, train, *args, **kwargs):
        seen.append(("fit", kwargs.get("seed"), train))
        return original_fit(net, train, *args, **kwargs)

    def prune(net, config, train, *args, **kwargs):
        seen.append(("prune", kwargs.get("seed"), train))
        return original_prune(net, config, train, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(stages_module, "fit_classifier", fit)
    patch.setattr(stages_module, "prune_and_finetune_detailed", prune)
    request.addfinalizer(patch.undo)
    config = ExperimentConfig(**TINY, canaries=200, run_root=str(root))
    return config, run_experiment(config), seen


def test_the_victims_training_and_finetuning_see_in_canaries_and_never_out_ones(canary_run):
    config, _, seen = canary_run
    stages = Stages(config)
    canary_x, canary_y = canary_records(stages.canaries, stages.dataset.x)
    victim_seeds = {stages.spec(VICTIM, SETTINGS[name]).seed for name in ("original", "pruned")}
    victim_runs = [train for _, seed, train in seen if seed in victim_seeds]
    assert {stage for stage, seed, _ in seen if seed in victim_seeds} == {"fit", "prune"}
    included = stages.canaries.included
    for x, y in victim_runs:
        rows = {(row.tobytes(), label) for row, label in zip(x, y)}
        assert all((canary_x[i].tobytes(), canary_y[i]) in rows for i in np.flatnonzero(included))
        assert not any((canary_x[i].tobytes(), canary_y[i]) in rows for i in np.flatnonzero(~included))
    for _, seed, (x, y) in seen:
        if seed not in victim_seeds:  # the shadows train on their own members only
            assert len(y) == len(stages.split.shadows[0].train)


def test_each_setting_has_a_canary_audit_in_the_typed_result_json_and_table(canary_run):
    config, result, _ = canary_run
    for setting in ("original", "pruned"):
        audit = result[setting].privacy_audit
        assert isinstance(audit, PrivacyAudit)
        assert audit.canaries == 200 and audit.canary_kind == "mislabel"
        assert set(audit.bounds) == {"conf", "loss"} and "lira_offline" in audit.skipped
        for bound in audit.bounds.values():
            # Each attack's bound holds at the confidence corrected for the two attacks that ran.
            assert bound.confidence == pytest.approx(1 - 0.05 / 2) and bound.canaries == 200
            assert bound.epsilon >= 0
        assert audit.accountant_epsilon is None and not audit.violation
        assert audit.delta == pytest.approx(1e-5)
    stored = read_json(result.path)
    assert set(stored["privacy_audit"]) == {"original", "pruned"}
    assert stored["privacy_audit"]["pruned"]["bounds"]["conf"]["method"] == "one_run"
    again = ExperimentResult.load(result.path)
    assert again == result and again.pruned.privacy_audit == result.pruned.privacy_audit
    assert "privacy_audit" not in again.extra
    table = result.table()
    assert "canary audit: 200 mislabel canaries" in table and "lira_offline" in table
    assert "WARNING" not in table


def test_a_run_without_canaries_writes_no_audit(tmp_path):
    result = run_experiment(ExperimentConfig(**{**TINY, "attacks": ("conf",)}, run_root=str(tmp_path)))
    assert result.pruned.privacy_audit is None
    assert "privacy_audit" not in read_json(result.path) and "canary audit" not in result.table()
