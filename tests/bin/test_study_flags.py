"""The study binary: grid flags on top of the experiment flags, every option flag reaching every trial, and a bad
grid point refused before any work with one line and exit code 2."""
import os
import subprocess
import sys

import pytest
from absl import flags

from tfprune_mia.bin import study
from tfprune_mia.bin.common import experiment_config_from_flags
from tfprune_mia.pipeline.study import study_configs

FLAGS = flags.FLAGS


@pytest.fixture
def parsed():
    def parse(*argv):
        FLAGS.unparse_flags()
        FLAGS(["study", *argv])
        return study_configs(experiment_config_from_flags(), study.study_grid(), make_prune=study.make_prune,
                             make_defense=study.make_defense)
    yield parse
    FLAGS.unparse_flags()


def test_option_flags_reach_every_pruner_and_defense_of_the_grid(parsed):
    configs = parsed("--study_pruners=l1_unstructured,slimming,admm", "--slimming_mode=one_shot",
                     "--admm_iterations=3", "--study_defenses=none,dp:0.5", "--dp_clip=2.0", "--study_seeds=1,2",
                     "--study_sparsities=0.5")
    assert len(configs) == 12
    assert {c.prune.options.mode for c in configs if c.prune.pruner == "slimming"} == {"one_shot"}
    assert {c.prune.options.iterations for c in configs if c.prune.pruner == "admm"} == {3}
    dp = [c for c in configs if c.defense.name == "dp"]
    assert len(dp) == 6 and {(c.defense.strength, c.defense.options.clip) for c in dp} == {(0.5, 2.0)}
    assert FLAGS.pruner == "l1_unstructured" and FLAGS.defense == "none"  # the grid leaves the flags as parsed


def test_axes_default_to_the_single_run_flags(parsed):
    (config,) = parsed("--pruner=l1_filter", "--sparsity=0.6", "--seed=3", "--defense=ppb", "--defense_arg=2")
    assert (config.prune.pruner, config.prune.sparsity, config.seed, config.defense.name, config.defense.strength) == (
        "l1_filter", 0.6, 3, "ppb", 2.0)


def test_a_bad_grid_point_exits_2_before_any_work(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "tfprune_mia.bin.study", f"--run_root={tmp_path}",
                           "--study_defenses=none,mcmia", "--study_sparsities=0.5,0.7"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: study point dataset=digits")
    assert "--pruner=admm" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing was written
