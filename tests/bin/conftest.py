import os
import subprocess
import sys

import pytest

# One tiny train_prune run serves every test that only reads a finished run (its table, its result file, its
# cached models): each such run costs a TensorFlow start, four trainings and their graph tracing.
TINY_RUN_FLAGS = ["--num_shadows=1", "--epochs=2", "--finetune_epochs=1", "--attack_epochs=1",
                  "--num_perturbations=2", "--bootstrap_resamples=20",
                  "--attacks=samia,conf,loss,lira_offline,rmia_offline"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run root, finished train_prune process) of one run with TINY_RUN_FLAGS, as a user starts it.

    Read-only: a test that writes into the run root works on a copy.
    """
    root = tmp_path_factory.mktemp("tiny_run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "tfprune_mia.bin.train_prune", f"--run_root={root}",
                             *TINY_RUN_FLAGS], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return root, result
