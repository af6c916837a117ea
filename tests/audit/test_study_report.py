"""The study report: paired two-level intervals, matched accuracy, and the report of a real (tiny) study whose
every number must equal the result JSONs; the release gate passes a 1-epoch model and fails an overfit one."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.audit.paired import VERDICTS, SettingScores, paired, two_level_bootstrap
from tfprune_mia.audit.gate import GateConfig, gate_violations
from tfprune_mia.audit.report_writer import shown_path, write_report
from tfprune_mia.audit.study_report import _interpolate, build_report, load_results
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import result_path, run_experiment
from tfprune_mia.pipeline.study import StudyGrid, run_study, study_configs
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

TINY_TRAIN = TrainConfig(epochs=1, batch_size=32)
TINY = dict(dataset="digits", num_shadows=1, train=TINY_TRAIN, finetune=TINY_TRAIN, attacks=("conf", "entropy"),
            attack_epochs=1, signals=SignalConfig(num_perturbations=2), max_samples=400, bootstrap_resamples=20)


# -- statistics on synthetic scores ------------------------------------------------------------------------------

def synthetic(seed, n=200, shift=0.0):
    rng = np.random.default_rng(seed)
    is_member = np.arange(n) < n // 2
    return rng.normal(size=n) + shift * is_member, is_member


def test_identical_victims_have_a_zero_paired_difference():
    units = [(s, s.copy(), m) for s, m in (synthetic(0), synthetic(1))]
    for low, high in two_level_bootstrap(units, 100).values():
        assert low == high == 0.0


def test_a_leakier_victim_is_detected_and_the_interval_covers_the_truth():
    units = []
    for seed in range(3):
        base, member = synthetic(seed)
        units.append((base, base + 2.0 * member, member))
    low, high = two_level_bootstrap(units, 200)["auc"]
    assert 0 < low < high
    from sklearn.metrics import roc_auc_score
    truth = np.mean([roc_auc_score(m, b) - roc_auc_score(m, a) for a, b, m in units])
    assert low <= truth <= high


def test_unpaired_noise_is_no_detectable_difference():
    units = [(synthetic(seed)[0], synthetic(seed + 10)[0], synthetic(seed)[1]) for seed in range(3)]
    low, high = two_level_bootstrap(units, 200)["auc"]
    assert low < 0 < high


def test_samples_are_paired_by_dataset_index_not_position():
    a = SettingScores({"x": np.array([1.0, 2.0, 3.0, 4.0])}, np.array([1, 1, 0, 0], bool), np.array([10, 11, 12, 13]))
    b = SettingScores({"x": np.array([40.0, 30.0, 20.0, 10.0])}, np.array([0, 0, 1, 1], bool),
                      np.array([13, 12, 11, 10]))
    first, second, member = paired(a, b, "x")
    assert first.tolist() == [1, 2, 3, 4] and second.tolist() == [10, 20, 30, 40] and member.tolist() == [1, 1, 0, 0]


def test_matched_accuracy_interpolates_along_sparsity_and_never_extrapolates():
    points = [(0.5, 0.9, 0.60), (0.7, 0.8, 0.58), (0.9, 0.6, 0.52)]
    found = _interpolate(0.7, points)
    assert found["matched_sparsity"] == pytest.approx(0.8) and found["matched_metric"] == pytest.approx(0.55)
    missing = _interpolate(0.95, points)
    assert missing["matched_metric"] is None and "stays below" in missing["status"]


def test_gate_names_configuration_and_attack_of_each_violation():
    row = {"section": "digits / small_cnn", "pruner": "l1_unstructured", "sparsity": 0.7, "defense": "none",
           "setting": "pruned", "attack": "conf", "seeds": "1 2", "tpr_at_0.01_fpr_high": 0.05, "auc_high": 0.6}
    original = {**row, "setting": "original", "auc_high": 0.99}
    assert gate_violations([row, original], [], GateConfig(tpr_at_1pct=0.1, auc=0.7), "auc") == []
    (violation,) = gate_violations([row, original], [], GateConfig(tpr_at_1pct=0.02), "auc")
    assert "l1_unstructured@0.7" in violation and "attack conf" in violation and "0.0500 > budget 0.02" in violation
    delta = {**row, "delta_auc_high": 0.03}
    assert len(gate_violations([], [delta], GateConfig(pruned_not_worse=0.0), "auc")) == 1
    assert gate_violations([], [delta], GateConfig(pruned_not_worse=0.05), "auc") == []


# -- a real study --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    grid = StudyGrid(("digits",), ("",), ("l1_unstructured",), (0.5, 0.8), (("none", None),), (1, 2))
    outcome = run_study(study_configs(ExperimentConfig(**TINY, run_root=str(root)), grid), poll_seconds=0.1)
    assert not outcome.missing
    report_dir = tmp_path_factory.mktemp("report")
    report = build_report(load_results([outcome.study_dir]), num_resamples=100)
    return outcome, report, write_report(report, report_dir, [outcome.study_dir]), report_dir


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_has_every_configuration_and_seed(study):
    outcome, report, paths, _ = study
    text = Path(paths["markdown"]).read_text()
    assert len(report.configurations) == 2 and all(c.seeds == (1, 2) for c in report.configurations)
    reported = {run.path for c in report.configurations for run in c.runs}
    for config in outcome.configs:
        assert str(result_path(config)) in reported
        assert f"`{shown_path(str(result_path(config)))}`" in text
    per_seed = read_csv(paths["per_seed"])
    assert {(r["sparsity"], r["seed"]) for r in per_seed} == {(s, seed) for s in ("0.5", "0.8") for seed in ("1", "2")}
    for heading in ("## Does pruning leak more?", "## Privacy at matched accuracy", "## Tables (paper style)",
                    "## Figures", "## Runs"):
        assert heading in text


def test_report_numbers_equal_the_result_jsons(study):
    _, report, paths, _ = study
    summary = read_csv(paths["summary"])
    deltas = read_csv(paths["deltas"])
    for configuration in report.configurations:
        jsons = [json.loads(Path(run.path).read_text()) for run in configuration.runs]
        for attack in ("conf", "entropy"):
            for setting in ("original", "pruned"):
                (row,) = [r for r in summary if float(r["sparsity"]) == configuration.sparsity
                          and r["setting"] == setting and r["attack"] == attack]
                for metric in ("auc", "balanced_accuracy", "tpr_at_0.01_fpr"):
                    values = [j["attacks"][setting][attack][metric] for j in jsons]
                    assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
                    assert [float(v) for v in row[f"{metric}_per_seed"].split()] == pytest.approx(values, rel=1e-5)
                accuracy = [j["models"][setting]["test_accuracy"] for j in jsons]
                assert float(row["test_accuracy_mean"]) == pytest.approx(np.mean(accuracy), abs=1e-12)
                if setting == "pruned":
                    assert float(row["auc_low"]) <= float(row["auc_high"])
            (delta,) = [r for r in deltas if float(r["sparsity"]) == configuration.sparsity and r["attack"] == attack]
            expected = np.mean([j["attacks"]["pruned"][attack]["auc"] - j["attacks"]["original"][attack]["auc"]
                                for j in jsons])
            assert float(delta["delta_auc"]) == pytest.approx(expected, abs=1e-12)
            assert float(delta["delta_auc_low"]) <= float(delta["delta_auc_high"])
            assert delta["verdict_auc"] in VERDICTS


def test_headline_has_one_cell_per_configuration_and_attack_with_its_verdict(study):
    _, report, paths, _ = study
    text = Path(paths["markdown"]).read_text()
    headline = text.split("### Headline: ")[1].split("\n### ")[0]
    counts = {v: sum(r["verdict_auc"] == v for r in report.deltas) for v in VERDICTS}
    assert (f"of {len(report.deltas)} differences, {counts['higher']} higher, {counts['lower']} lower, "
            f"{counts['no detectable difference']} n.d.") in headline
    for row in report.deltas:
        line = next(line for line in headline.splitlines()
                    if line.startswith(f"| {row['pruner']} | {row['sparsity']:g} | {row['defense']} | "))
        verdict = {"no detectable difference": "n.d."}.get(row["verdict_auc"], row["verdict_auc"])
        assert f"{row['delta_auc']:+.3f} [{row['delta_auc_low']:+.3f}, {row['delta_auc_high']:+.3f}] {verdict}" in line


def test_report_compares_at_matched_accuracy_and_draws_the_plots(study):
    _, report, paths, report_dir = study
    matched = read_csv(paths["matched"])
    assert {r["attack"] for r in matched} == {"conf", "entropy"}
    for row in matched:
        assert row["sparsities"] == "0.5 0.8"
        assert row["status"] == "interpolated along sparsity" or row["status"].startswith("not matched")
    figures = {Path(p).name for k, p in paths.items() if k.startswith("figure:")}
    section = "digits_n_400_small_cnn"
    assert {f"auc_vs_sparsity_{section}.png", f"frontier_{section}.png", f"divergence_gaps_{section}.png",
            f"roc_{section}_conf.png", f"roc_{section}_entropy.png"} <= figures
    for name in figures:
        assert f"{name}" in Path(paths["markdown"]).read_text()
    assert list((report_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_results_are_found_from_a_study_its_parent_or_the_run_root(study):
    outcome, report, *_ = study
    expected = sorted(run.path for c in report.configurations for run in c.runs)
    run_root = Path(outcome.study_dir).parent.parent
    for source in (outcome.study_dir, str(Path(outcome.study_dir).parent), str(run_root)):
        assert sorted(r.path for r in load_results([source])) == expected


def test_bad_report_input_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such result file"):
        load_results([str(tmp_path / "nothing")])
    with pytest.raises(ConfigError, match="no result files"):
        load_results([str(tmp_path)])


def run_report(*flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfprune_mia.bin.report", *flags], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_release_gate_passes_a_one_epoch_model_and_fails_an_overfit_one(study, tmp_path):
    outcome, *_ = study
    passed = run_report(f"--runs={outcome.study_dir}", f"--report_dir={tmp_path / 'pass'}", "--gate_auc=0.75",
                        "--report_figures=false")
    assert passed.returncode == 0, passed.stderr
    assert "release gate: PASSED" in passed.stdout
    # Deliberately overfit: 200 records, 40 epochs without weight decay or early stopping.
    overfit_train = TrainConfig(epochs=40, batch_size=8, weight_decay=0.0, patience=40)
    overfit = ExperimentConfig(**{**TINY, "max_samples": 200, "train": overfit_train,
                                  "finetune": TrainConfig(epochs=1, batch_size=8, weight_decay=0.0)},
                               prune=PruneConfig(sparsity=0.5), run_root=str(tmp_path / "overfit"))
    result = run_experiment(overfit)
    assert result.original.model.train_accuracy > 0.99
    failed = run_report(f"--runs={tmp_path / 'overfit'}", f"--report_dir={tmp_path / 'fail'}", "--gate_auc=0.75",
                        "--report_figures=false")
    assert failed.returncode == 1, failed.stderr
    assert "gate violation: digits (n=200) / small_cnn: l1_unstructured@0.5, defense none, pruned, attack conf: AUC" \
        in failed.stderr
    assert "release gate: FAILED" in failed.stderr
