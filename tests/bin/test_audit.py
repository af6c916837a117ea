"""The `audit` binary on models a user brings: here the models train_prune cached, which must give exactly the
numbers train_prune reported for them (same signals, seeds and attacks through the same `audit` function)."""
import json
import os
import subprocess
import sys

import numpy as np

from tfprune_mia.data import load_dataset
from tfprune_mia.data.splits import load_split


def run(module, *flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", f"tfprune_mia.bin.{module}", *flags], capture_output=True,
                          text=True, env=env, timeout=900)


def without_seconds(attacks):
    return {name: {k: v for k, v in metrics.items() if k != "seconds"} for name, metrics in attacks.items()}


def test_audit_binary_reproduces_train_prune_on_its_cached_models(tmp_path, tiny_run):
    root, _ = tiny_run  # train_prune with --attacks=samia,conf,loss,lira_offline,rmia_offline (tests/bin/conftest.py)
    run_dir = root / "digits-small_cnn-seed7"
    (result_file,) = (run_dir / "results").glob("*.json")
    expected = json.loads(result_file.read_text())

    data = load_dataset("digits")
    split = load_split(run_dir / "split.npz")
    arrays = {}
    for name, index in [("members", split.victim.train), ("non_members", split.victim.test),
                        ("population", split.victim.dev), ("shadow_in", split.shadows[0].train),
                        ("shadow_out", split.shadows[0].test)]:
        arrays[name] = tmp_path / f"{name}.npz"
        np.savez(arrays[name], x=data.x[index], y=data.y[index])
    (original,) = run_dir.glob("original-*")
    (pruned,) = run_dir.glob("l1_unstructured-*")
    output = tmp_path / "audit.json"
    audited = run("audit", f"--target_model={original / 'victim' / 'model.h5'}",
                  f"--pruned_model={pruned / 'victim' / 'model.h5'}",
                  f"--members={arrays['members']}", f"--non_members={arrays['non_members']}",
                  f"--shadow_models={original / 'shadow_0' / 'model.h5'}",
                  f"--pruned_shadow_models={pruned / 'shadow_0' / 'model.h5'}",
                  f"--shadow_members={arrays['shadow_in']}", f"--shadow_non_members={arrays['shadow_out']}",
                  f"--population={arrays['population']}", "--attack_epochs=1", "--num_perturbations=2",
                  "--bootstrap_resamples=20", "--attacks=samia,conf,loss,lira_offline,rmia_offline",
                  f"--output={output}")
    assert audited.returncode == 0, audited.stderr[-2000:]
    got = json.loads(output.read_text())
    for setting in ("original", "pruned"):
        assert without_seconds(got["attacks"][setting]) == without_seconds(expected["attacks"][setting]), setting
        for key in ("train_accuracy", "test_accuracy"):
            assert got["models"][setting][key] == expected["models"][setting][key]
        assert got["divergence"][setting] == expected["divergence"][setting]
    assert "samia" in audited.stdout and "test accuracy" in audited.stdout and str(output) in audited.stdout

    again = run("audit", f"--target_model={original / 'victim' / 'model.h5'}", f"--members={arrays['members']}",
                f"--non_members={arrays['non_members']}", "--attacks=conf", f"--output={output}")
    assert again.returncode == 2 and "never overwritten" in again.stderr.strip().splitlines()[-1]


def test_audit_binary_names_a_missing_shadow_in_one_line(tmp_path):
    model = tmp_path / "missing.h5"
    result = run("audit", f"--target_model={model}", f"--members={model}", f"--non_members={model}",
                 f"--output={tmp_path / 'out.json'}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "does not exist" in last
