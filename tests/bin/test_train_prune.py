"""The main binary as a user runs it: a real subprocess, flags in, table out, errors as one line."""
import json
import os
import subprocess
import sys

import pytest


def run_binary(*flags, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfprune_mia.bin.train_prune", *flags], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_train_prune_prints_the_table_and_writes_the_result(tiny_run):
    root, result = tiny_run  # a real `python -m tfprune_mia.bin.train_prune` process (tests/bin/conftest.py)
    assert "test accuracy" in result.stdout and "samia" in result.stdout and "conf" in result.stdout
    (path,) = (root / "digits-small_cnn-seed7" / "results").glob("*.json")
    report = json.loads(path.read_text())
    assert report["config"]["num_shadows"] == 1
    assert str(path) in result.stdout


# The full bad-input corpus runs in-process (tests/reliability/test_bad_inputs.py); these two prove the path
# through a real process: exit status and stderr as a shell user sees them.
@pytest.mark.parametrize("flag,message", [
    ("--sparsity=1.5", "sparsity=1.5: must be strictly between 0 and 1"),
    ("--dataset=imagenet", "unknown dataset 'imagenet'; choose one of:"),
    ("--sparsity=abc", "flag --sparsity=abc: could not convert string to float: 'abc'; see --help"),
])
def test_bad_flags_fail_with_one_line_before_any_work(tmp_path, flag, message):
    result = run_binary(f"--run_root={tmp_path}", flag)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert list(tmp_path.iterdir()) == []


def test_demo_flagfile_matches_the_defaults():
    """`train_prune` alone and `train_prune --flagfile=flags/demo.flags` must be the same demo."""
    from absl import flags

    from tfprune_mia.bin import train_prune  # noqa: F401  (defines the flags)

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in open(os.path.join(repo, "flags", "demo.flags")):
        line = line.strip()
        if line and not line.startswith("#"):
            name, value = line[2:].split("=", 1)
            default = flags.FLAGS[name].default
            if name == "model" and default == "":  # empty = the dataset's default model
                from tfprune_mia.data import DATASETS

                default = DATASETS.get("digits").default_model
            parsed = flags.FLAGS[name].parser.parse(value)
            assert parsed == default, f"--{name}: demo.flags says {value}, default is {default}"
