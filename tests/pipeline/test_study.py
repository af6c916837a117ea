"""Studies: the grid is validated up front, the oracle hands every trial out once (never two trials training the
same originals at once), and a study killed mid-way (chief and a worker) resumes without recomputing a finished
trial."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import result_path
from tfprune_mia.pipeline.study import HPARAM, StudyGrid, StudyOracle, TrialStatus, parse_defenses, run_study, \
    study_configs, study_table
from tfprune_mia.pruning import L1UnstructuredOptions, PruneConfig
from tfprune_mia.training import TrainConfig

TINY_TRAIN = TrainConfig(epochs=1, batch_size=32)
TINY = dict(dataset="digits", num_shadows=1, train=TINY_TRAIN, finetune=TINY_TRAIN, attacks=("conf", "entropy"),
            attack_epochs=1, signals=SignalConfig(num_perturbations=2), max_samples=200, bootstrap_resamples=20)
TINY_FLAGS = ["--dataset=digits", "--max_samples=200", "--epochs=1", "--finetune_epochs=1", "--num_shadows=1",
              "--attacks=conf,entropy", "--attack_epochs=1", "--num_perturbations=2", "--bootstrap_resamples=20"]


def grid(**overrides):
    axes = dict(datasets=("digits",), models=("",), pruners=("l1_unstructured",), sparsities=(0.5,),
                defenses=(("none", None),), seeds=(7,))
    return StudyGrid(**{**axes, **overrides})


def test_grid_is_every_combination_ordered_so_neighbours_share_originals():
    configs = study_configs(ExperimentConfig(num_shadows=1), grid(
        pruners=("l1_unstructured", "l1_filter"), sparsities=(0.5, 0.9), defenses=(("none", None), ("ppb", 8.0)),
        seeds=(1, 2)))
    assert len(configs) == 16
    assert [(c.seed, c.defense.name, c.prune.pruner, c.prune.sparsity) for c in configs[:5]] == [
        (1, "none", "l1_unstructured", 0.5), (1, "none", "l1_unstructured", 0.9), (1, "none", "l1_filter", 0.5),
        (1, "none", "l1_filter", 0.9), (1, "ppb", "l1_unstructured", 0.5)]
    assert {c.defense.strength for c in configs if c.defense.name == "ppb"} == {8.0}
    assert all(c.shadow_prune == c.prune for c in configs)
    assert len({c.original_key() for c in configs}) == 2  # one set of originals per seed
    assert len({c.result_key() for c in configs if c.seed == 1}) == 8


def test_every_option_of_the_base_reaches_every_trial():
    base = ExperimentConfig(num_shadows=1, prune=PruneConfig("l1_unstructured", 0.7,
                                                             L1UnstructuredOptions(scope="global")),
                            train=TrainConfig(epochs=2, patience=2), max_samples=300, attacks=("conf",))
    configs = study_configs(base, grid(sparsities=(0.5, 0.9), seeds=(3, 4)))
    assert all(c.prune.options.scope == "global" and c.train == base.train and c.max_samples == 300
               and c.attacks == ("conf",) for c in configs)
    made = []
    study_configs(base, grid(pruners=("l1_filter",)), make_prune=lambda p, s: made.append((p, s)) or PruneConfig(p, s))
    assert made == [("l1_filter", 0.5)]


@pytest.mark.parametrize("overrides,message", [
    (dict(pruners=("l1_unstructured",), defenses=(("mcmia", None),)), "study point .*defense=mcmia.*--pruner=admm"),
    (dict(sparsities=(1.5,)), "study point .*sparsity=1.5.*strictly between 0 and 1"),
    (dict(datasets=("mnist",)), "study point dataset=mnist.*unknown dataset"),
    (dict(seeds=()), "the study has no seeds"),
])
def test_a_bad_point_fails_the_whole_study_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        study_configs(ExperimentConfig(num_shadows=1), grid(**overrides))


def test_defenses_parse_with_optional_strength():
    assert parse_defenses(["none", "ppb:4", "adv"]) == (("none", None), ("ppb", 4.0), ("adv", None))
    with pytest.raises(ConfigError, match="not a number; pass e.g. --study_defenses=none,ppb:4"):
        parse_defenses(["ppb:x"])


def oracle_at(tmp_path, groups):
    oracle = StudyOracle(groups)
    oracle._set_project_dir(str(tmp_path), "oracle")
    return oracle


def index(trial):
    return trial.hyperparameters.values[HPARAM]


def test_oracle_never_lets_two_workers_train_the_same_originals(tmp_path):
    oracle = oracle_at(tmp_path, ["seed1", "seed1", "seed2"])
    first, second = oracle.create_trial("w0"), oracle.create_trial("w1")
    assert (index(first), index(second)) == (0, 2)  # trial 1 would train seed1's originals a second time
    assert oracle.create_trial("w2").status == TrialStatus.IDLE
    oracle.update_trial(first.trial_id, {"pruned_test_accuracy": 0.9})
    first.status = TrialStatus.COMPLETED
    oracle.end_trial(first)
    third = oracle.create_trial("w2")
    assert index(third) == 1  # seed1's originals are cached now
    assert oracle.create_trial("w0").status == TrialStatus.STOPPED


def finish(oracle, trial):
    oracle.update_trial(trial.trial_id, {"pruned_test_accuracy": 0.5})
    trial.status = TrialStatus.COMPLETED
    oracle.end_trial(trial)


def test_a_restarted_oracle_keeps_running_trials_with_their_workers(tmp_path):
    oracle = oracle_at(tmp_path, ["a", "b", "c", "d"])
    running = {worker: oracle.create_trial(worker) for worker in ("w0", "w1")}
    finish(oracle, running["w0"])
    oracle.create_trial("w0")  # the chief dies right after handing out this trial
    restarted = oracle_at(tmp_path, ["a", "b", "c", "d"])
    restarted.reload()
    # Running trials are neither lost nor handed to another worker: their workers (or restarts) get them back.
    assert index(restarted.create_trial("w2")) == 3
    resumed = restarted.create_trial("w1")
    assert index(resumed) == index(running["w1"])
    assert restarted.trials[running["w0"].trial_id].status == TrialStatus.COMPLETED
    finish(restarted, restarted.create_trial("w0"))  # started just before the restart: still ends cleanly
    finish(restarted, resumed)
    assert set(restarted.ongoing_trials) == {"w2"}


def test_in_process_study_runs_every_trial_once_and_resumes_as_reused(tmp_path):
    configs = study_configs(ExperimentConfig(**TINY, run_root=str(tmp_path)), grid(sparsities=(0.5, 0.8)))
    outcome = run_study(configs, poll_seconds=0.1)
    assert outcome.role == "single" and not outcome.missing
    assert [(r.index, r.computed) for r in outcome.records] == [(0, True), (1, True)]
    assert all(result_path(c).exists() for c in configs)
    manifest = json.loads(Path(outcome.study_dir, "study.json").read_text())
    assert [t["result"] for t in manifest["trials"]] == [str(result_path(c)) for c in configs]
    mtimes = [result_path(c).stat().st_mtime_ns for c in configs]
    again = run_study(configs, poll_seconds=0.1)  # the oracle knows both finished: nothing runs
    assert again.records == () and not again.missing
    assert [result_path(c).stat().st_mtime_ns for c in configs] == mtimes
    assert "2 trials" in study_table(again) and "done" in study_table(again)


# -- several processes over loopback, killed and resumed ------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tuner_id, port, flags, log):
    env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFPRUNE_MIA_FAULT", None)
    return subprocess.Popen([sys.executable, "-m", "tfprune_mia.bin.study", *flags], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_chief_and_two_workers_killed_mid_way_resume_without_recomputing(tmp_path):
    """2 pruners x 2 sparsities x 2 seeds over a chief and two workers; the chief and one worker are killed
    once some trials have finished and restarted with the same ids; every trial is computed exactly once."""
    flags = TINY_FLAGS + [f"--run_root={tmp_path}", "--study_pruners=l1_unstructured,l1_filter",
                          "--study_sparsities=0.5,0.8", "--study_seeds=1,2", "--study_poll_seconds=0.5"]
    port = free_port()
    logs = {name: open(tmp_path / f"{name}.log", "ab") for name in ("chief", "worker0", "worker1")}
    procs = {name: start(name, port, flags, logs[name]) for name in logs}
    results = lambda: sorted(tmp_path.glob("digits-*/results/*.json"))  # noqa: E731
    try:
        wait_for(lambda: len(results()) >= 3, 900, "three finished trials")
        finished = {path: path.stat().st_mtime_ns for path in results()}
        for name in ("chief", "worker0"):
            procs[name].send_signal(signal.SIGKILL)
            procs[name].wait()
        time.sleep(1)
        for name in ("chief", "worker0"):
            procs[name] = start(name, port, flags, logs[name])
        for name, proc in procs.items():
            assert proc.wait(timeout=1500) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for log in logs.values():
            log.close()
    assert len(results()) == 8
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # nothing finished was redone
    study_dir = next((tmp_path / "studies").iterdir())
    events = [json.loads(p.read_text()) for p in (study_dir / "events").glob("*.json")]
    computed = sorted(e["index"] for e in events if e["computed"])
    assert computed == list(range(8)), events  # every trial computed once, by whichever worker
    assert {e["tuner_id"] for e in events} == {"worker0", "worker1"}
