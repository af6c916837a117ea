"""A run root and study directory on a `tf.io.gfile` file system (TensorFlow's in-memory `ram://` standing in for
GCS): train_prune, the attack re-run and a study write everything there and nothing locally, and a re-run reuses
every stage instead of recomputing it."""
import json
import uuid

import numpy as np
import pytest

from tfprune_mia import fs
from tfprune_mia.attacks import SignalConfig
from tfprune_mia.audit.report_writer import shown_path
from tfprune_mia.audit.study_report import load_results
from tfprune_mia.backend import tf
from tfprune_mia.locking import Lease
from tfprune_mia.pipeline import experiment, signal_stages, stages
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import rerun_attacks, result_path, run_experiment
from tfprune_mia.pipeline.study import StudyGrid, run_study, study_configs
from tfprune_mia.training import TrainConfig

TINY_TRAIN = TrainConfig(epochs=1, batch_size=32)
TINY = dict(dataset="digits", num_shadows=1, train=TINY_TRAIN, finetune=TINY_TRAIN, attacks=("conf", "entropy"),
            attack_epochs=1, signals=SignalConfig(num_perturbations=2), max_samples=200, bootstrap_resamples=20)


@pytest.fixture
def ram_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # anything written locally by mistake (a "ram:" directory) would land here
    monkeypatch.setattr(Lease, "settle", 0.01)  # one process: no racing claimant to wait for
    root = f"ram://remote-{uuid.uuid4().hex[:8]}"
    yield root
    fs.rmtree(root)
    assert list(tmp_path.iterdir()) == []


def settings_of(result):
    return json.dumps({name: audit.to_dict() for name, audit in result.settings.items()}, sort_keys=True)


def forbid_computing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cached stage was recomputed")

    for name in ("_train_original", "_prune"):
        monkeypatch.setattr(stages.Stages, name, refuse)
    monkeypatch.setattr(signal_stages, "compute_signals", refuse)
    monkeypatch.setattr(experiment, "audit", refuse)


def test_train_prune_and_attack_on_a_ram_run_root_reuse_every_stage(ram_root, monkeypatch):
    config = ExperimentConfig(**TINY, run_root=f"{ram_root}/runs")
    first = run_experiment(config)
    path = result_path(config)
    assert isinstance(path, fs.GPath) and first.path == str(path) and path.exists()
    assert path.with_suffix(".scores.npz").exists() and fs.path(first.figures["divergence"]).exists()
    assert len(list(config.base_dir.rglob("meta.json"))) == 4  # victim and shadow, original and pruned
    assert not fs.glob(f"{config.base_dir}/*/*/.lock") and not fs.glob(f"{config.base_dir}/results/.*.lock")

    forbid_computing(monkeypatch)
    again = rerun_attacks(config)  # the attack binary: the cached models and attack results, nothing trained
    assert again.path != first.path and again.path.startswith(str(config.base_dir))
    assert settings_of(again) == settings_of(first)
    path.unlink()
    rebuilt = run_experiment(config)  # every stage cached: only the result is written again
    assert settings_of(rebuilt) == settings_of(first) and path.exists()
    stored = np.load(tf.io.gfile.GFile(str(path.with_suffix(".scores.npz")), "rb"))
    np.testing.assert_array_equal(stored["pruned/conf"], first.pruned["conf"].scores)


def test_study_with_run_root_and_study_dir_on_ram(ram_root, monkeypatch):
    # keras-tuner rewrites its oracle's JSON files in place; ram:// (TF 2.15) appends to a file reopened for
    # writing, where GCS and local disks replace it. Give ram:// their semantics for keras-tuner's writes.
    from keras_tuner.src.backend import io as tuner_io

    tuner_open = tuner_io.File

    def replacing_open(path, mode="r"):
        if mode.startswith("w") and fs.path(path).is_file():
            fs.path(path).unlink()
        return tuner_open(path, mode)

    monkeypatch.setattr(tuner_io, "File", replacing_open)
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    grid = StudyGrid(datasets=("digits",), models=("",), pruners=("l1_unstructured",), sparsities=(0.5, 0.8),
                     defenses=(("none", None),), seeds=(7,))
    configs = study_configs(ExperimentConfig(**TINY, run_root=f"{ram_root}/runs"), grid)
    study_dir = f"{ram_root}/studies/digits"
    outcome = run_study(configs, study_dir, poll_seconds=0.1)
    assert outcome.role == "single" and not outcome.missing
    assert [(r.index, r.computed) for r in outcome.records] == [(0, True), (1, True)]
    manifest = json.loads((fs.path(study_dir) / "study.json").read_text())
    assert [t["result"] for t in manifest["trials"]] == [str(result_path(c)) for c in configs]
    assert tf.io.gfile.exists(f"{study_dir}/oracle/oracle.json")

    assert [r.path for r in load_results([study_dir])] == [str(result_path(c)) for c in configs]  # `report`
    assert shown_path(str(result_path(configs[0]))) == str(result_path(configs[0]))

    forbid_computing(monkeypatch)
    again = run_study(configs, study_dir, poll_seconds=0.1)  # the oracle knows both finished: nothing runs
    assert again.records == () and not again.missing
    # A new study directory over the same trials: its oracle starts afresh, the run root's results are reused.
    fresh = run_study(configs, f"{ram_root}/studies/another", poll_seconds=0.1)
    assert [(r.index, r.computed) for r in fresh.records] == [(0, False), (1, False)]
