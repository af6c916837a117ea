"""The sweep binary and library: a grid of train_prune configurations validated up front, one table.

The expensive end-to-end check (kill a sweep mid-way, resume it, compare with train_prune) lives in
tests/reliability/test_faults.py::test_killed_sweep_resumes_and_matches_train_prune.
"""
import os
import subprocess
import sys

import pytest

from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.pipeline.sweep import SweepRow, parse_sparsities, sweep_configs, sweep_csv_rows, sweep_table


def run_sweep_binary(*flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFPRUNE_MIA_FAULT", None)
    return subprocess.run([sys.executable, "-m", "tfprune_mia.bin.sweep", *flags], capture_output=True, text=True,
                          env=env, timeout=600)


def test_grid_is_pruners_times_sparsities_with_shadows_following_the_victim():
    configs = sweep_configs(ExperimentConfig(num_shadows=1), ["l1_unstructured", "l1_filter"], [0.5, 0.7, 0.9])
    assert [(c.prune.pruner, c.prune.sparsity) for c in configs] == [
        ("l1_unstructured", 0.5), ("l1_unstructured", 0.7), ("l1_unstructured", 0.9),
        ("l1_filter", 0.5), ("l1_filter", 0.7), ("l1_filter", 0.9)]
    assert all(c.shadow_prune == c.prune for c in configs)
    # Every configuration shares the originals: same key, so they are trained once.
    assert len({c.original_key() for c in configs}) == 1
    assert len({c.result_key() for c in configs}) == 6


def test_fixed_shadow_setting_is_kept_across_the_grid():
    base = ExperimentConfig(num_shadows=1, shadow_prune=PruneConfig("l1_filter", 0.5))
    configs = sweep_configs(base, ["l1_unstructured"], [0.7, 0.9])
    assert all(c.shadow_prune == PruneConfig("l1_filter", 0.5) for c in configs)


def test_duplicates_are_run_once():
    assert len(sweep_configs(ExperimentConfig(), ["l1_unstructured"], [0.7, 0.7])) == 1


@pytest.mark.parametrize("pruners,sparsities,message", [
    (["l1_unstructured"], [0.5, 1.0], "must be strictly between 0 and 1"),
    (["nope"], [0.5], "unknown pruner 'nope'"),
    ([], [0.5], "empty sweep"),
])
def test_bad_grid_is_refused_before_any_work(pruners, sparsities, message):
    with pytest.raises(ConfigError, match=message):
        sweep_configs(ExperimentConfig(), pruners, sparsities)


def test_sparsity_list_must_be_numbers():
    assert parse_sparsities(["0.5", "0.9"]) == [0.5, 0.9]
    with pytest.raises(ConfigError, match=r"'x' is not a number; pass e.g. --sparsities=0.5,0.7,0.9"):
        parse_sparsities(["0.5", "x"])


def fake_result(auc_original, auc_pruned):
    from tfprune_mia.audit.results import AttackResult, AuditResult, ExperimentResult, ModelFacts

    def audit(auc, accuracy):
        return AuditResult({"conf": AttackResult("conf", {"auc": auc, "tpr_at_0.01_fpr": auc / 10})},
                           model=ModelFacts(test_accuracy=accuracy, sparsity={"prunable_sparsity": 0.5}))

    return ExperimentResult({"attacks": ["conf"]}, {"original": audit(auc_original, 0.9),
                                                   "pruned": audit(auc_pruned, 0.8)})


def test_table_has_one_short_line_per_configuration_and_the_csv_every_metric():
    configs = sweep_configs(ExperimentConfig(attacks=("conf",)), ["l1_unstructured"], [0.5, 0.9])
    rows = [SweepRow(configs[0], fake_result(0.61, 0.65), reused=True),
            SweepRow(configs[1], fake_result(0.62, 0.51), reused=False)]
    lines = sweep_table(rows).splitlines()
    assert "strongest attack" in lines[2] and "AUC pruned" in lines[2]
    assert lines[3].split() == ["l1_unstructured", "0.5", "0.5000", "0.9000", "0.8000", "conf", "0.6100", "0.6500",
                                "0.0610", "0.0650", "1/1", "reused"]
    assert lines[4].split()[-3:] == ["0.0510", "0/1", "computed"]
    assert all(len(line) < 160 for line in lines)
    records = sweep_csv_rows(rows)
    assert len(records) == 4 and {r["setting"] for r in records} == {"original", "pruned"}


@pytest.mark.parametrize("flag,message", [
    ("--sparsities=0.5,x", "'x' is not a number"),
    ("--sparsities=0.5,0", "must be strictly between 0 and 1"),
    ("--pruners=l1_unstructured,magic", "unknown pruner 'magic'"),
])
def test_sweep_binary_refuses_a_bad_grid_in_one_line(tmp_path, flag, message):
    result = run_sweep_binary(f"--run_root={tmp_path / 'runs'}", flag)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "runs").exists()
