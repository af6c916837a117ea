"""Two train_prune processes started on one run root at once: the second waits for each stage the first is
computing and reuses it, instead of both doing all the work; both print the same numbers."""
import os
import subprocess
import sys

import pytest

FLAGS = ["--num_shadows=1", "--epochs=3", "--finetune_epochs=1", "--attack_epochs=1", "--num_perturbations=2",
         "--attacks=conf", "--bootstrap_resamples=0"]


# Stacked training locks every member of the stack (in path order) before training any.
@pytest.mark.parametrize("extra", [[], pytest.param(["--stacked_training=auto", "--num_shadows=2"],
                                                    marks=pytest.mark.slow, id="stacked")])
def test_concurrent_runs_share_the_work(tmp_path, extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "tfprune_mia.bin.train_prune", f"--run_root={tmp_path}", *FLAGS, *extra]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    (out1, err1), (out2, err2) = first.communicate(timeout=600), second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err1[-1500:] + err2[-1500:]
    assert "in use by another run" in err1 + err2
    assert out1.split("results:")[0] == out2.split("results:")[0]
    assert len(list((tmp_path / "digits-small_cnn-seed7" / "results").glob("*.json"))) == 1
