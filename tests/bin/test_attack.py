"""The `attack` binary re-runs attacks on a cached train_prune run without training anything, and says to
run train_prune first when a model is missing."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np

BASE = ["--num_shadows=1", "--epochs=2", "--finetune_epochs=1", "--attack_epochs=1", "--num_perturbations=2",
        "--bootstrap_resamples=20"]


def run(module, *flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", f"tfprune_mia.bin.{module}", *flags], capture_output=True,
                          text=True, env=env, timeout=600)


def test_attack_reruns_on_cached_models_and_refuses_to_train(tmp_path, tiny_run):
    missing = run("attack", f"--run_root={tmp_path / 'empty'}", *BASE, "--attacks=conf")
    assert missing.returncode == 2 and "run train_prune first" in missing.stderr.strip().splitlines()[-1]

    # The shared tiny run's victim and shadow (same training flags) are reused: train_prune adds the reference
    # models online LiRA needs. Its results, attack cache and event files are left out: all found below are this test's.
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run[0], runs)
    for name in ("results", "tensorboard", "attacks"):
        shutil.rmtree(runs / "digits-small_cnn-seed7" / name)
    root = f"--run_root={runs}"
    trained = run("train_prune", root, *BASE, "--attacks=conf,lira_online")
    assert trained.returncode == 0, trained.stderr[-2000:]
    models = sorted(runs.glob("**/model.h5"))
    stamps = {path: path.stat().st_mtime_ns for path in models}
    assert any("reference_1" in str(path) for path in models)  # online LiRA's IN models were built

    result = run("attack", root, *BASE,
                 "--attacks=loss,lira_offline,rmia_offline,lira_online,rmia_online,pair_lira_online")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {path: path.stat().st_mtime_ns for path in sorted(runs.glob("**/model.h5"))} == stamps
    for name in ("lira_offline", "rmia_online", "bootstrap 95% intervals", "pair_lira_online skipped: no pair"):
        assert name in result.stdout
    # TF Privacy's suite shows only where its optional package is installed; no skip note when nobody asked.
    tfp_installed = importlib.util.find_spec("tensorflow_privacy.privacy.privacy_tests") is not None
    assert ("TF Privacy" in result.stdout) == tfp_installed
    run_dir = runs / "digits-small_cnn-seed7" / "results"
    (path,) = [p for p in run_dir.glob("*.json") if "rmia_online" in p.read_text()]
    report = json.loads(path.read_text())
    metrics = report["attacks"]["pruned"]["lira_online"]
    low, high = metrics["ci95"]["auc"]
    assert low <= metrics["auc"] <= high and metrics["per_class"]
    scores = np.load(path.with_suffix(".scores.npz"))
    assert scores["pruned/rmia_offline"].shape == scores["pruned/is_member"].shape == scores["pruned/index"].shape
    assert all(os.path.getsize(p) > 1000 for p in report["figures"].values())
    assert list((runs / "digits-small_cnn-seed7" / "tensorboard").glob("attacks-*/events.*"))

    # re-running train_prune's own attacks keeps its result file and writes the re-run beside it
    (original,) = [p for p in run_dir.glob("*.json") if ".attack-" not in p.name and "rmia_online" not in p.read_text()]
    before = original.read_bytes()
    again = run("attack", root, *BASE, "--attacks=conf,lira_online")
    assert again.returncode == 0, again.stderr[-2000:]
    assert original.read_bytes() == before
    assert len(list(run_dir.glob(original.stem + ".attack-*.json"))) == 1

    # a model the attacks need but train_prune did not build (4 reference models instead of 2)
    more = run("attack", root, *BASE, "--attacks=lira_online", "--num_reference_models=4")
    assert more.returncode == 2
    assert "run train_prune first" in more.stderr.strip().splitlines()[-1]

    # The deployed artefact: converts the cached models, trains nothing.
    deployed = run("attack", root, *BASE, "--attacks=conf", "--attack_artifact=tflite_int8")
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    assert "artifact tflite_int8 (KB)" in deployed.stdout
    assert {path: path.stat().st_mtime_ns for path in sorted(runs.glob("**/model.h5"))} == stamps
