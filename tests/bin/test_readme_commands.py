"""The README's command sequence after the demo runs as written, in order, on a fresh run root (with tiny
training budgets appended, which override the defaults but not the commands' own flags)."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
TINY = ["--num_shadows=1", "--epochs=1", "--finetune_epochs=1", "--attack_epochs=1", "--num_perturbations=2",
        "--bootstrap_resamples=0", "--max_samples=600"]
EXPERIMENT_BINARIES = {"train_prune", "attack", "sweep", "tune", "study"}


def readme_commands():
    block = README.read_text().split("### The other binaries", 1)[1]
    code = re.search(r"```sh\n(.*?)```", block, re.S).group(1)
    return [shlex.split(line.split("  #")[0]) for line in code.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_commands_run_in_order_after_the_demo(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    commands = [["train_prune"]] + readme_commands()
    assert [c[0] for c in commands[1:4]] == ["attack", "train_prune", "attack"]
    shutil.copytree(README.parent / "flags", tmp_path / "flags")  # the README's commands run from the repo root
    for binary, *flags in commands:
        extra = TINY + (["--max_trials=1"] if binary == "tune" else []) if binary in EXPERIMENT_BINARIES else []
        # A study's flagfile sets full budgets: the tiny ones go after it (the grid itself is kept).
        argv = [*flags, *extra] if binary == "study" else [*extra, *flags]
        result = subprocess.run([sys.executable, "-m", f"tfprune_mia.bin.{binary}", *argv], cwd=tmp_path,
                                capture_output=True, text=True, env=env, timeout=1800)
        if binary == "report":  # the release gate may refuse these models: exit 1 with its verdict, by design
            assert result.returncode in (0, 1) and "release gate:" in result.stdout + result.stderr, result.stderr
            continue
        assert result.returncode == 0, f"{binary} {flags}: {result.stderr[-1500:]}"


@pytest.mark.slow
def test_the_readme_demo_output_is_what_train_prune_prints(tmp_path):
    """The demo exactly as the quick start runs it: its table equals the README's example, line for line up to
    the README's '...', and stderr holds nothing but progress lines."""
    expected = re.search(r"Example output.*?```\n(.*?)```", README.read_text(), re.S).group(1).splitlines()
    expected = expected[:expected.index("  ...")]
    env = {**os.environ, "TFPRUNE_MIA_PROGRESS": "1"}
    result = subprocess.run([sys.executable, "-m", "tfprune_mia.bin.train_prune"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.splitlines()[:len(expected)] == expected
    noise = [line for line in result.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("[")]
    assert not noise, noise[:5]
