"""One whole configuration through the public pipeline (run_experiment), cold, with the time of each stage.

  python benchmarks/end_to_end.py --setting=digits                       # goal <= 40 CPU-s
  python benchmarks/end_to_end.py --setting=fashion_mnist                # goal <= 300 CPU-s, peak RSS <= 1 GB
  python benchmarks/end_to_end.py --setting=digits --stacked_training=auto,off   # both ways, one process each
  python benchmarks/end_to_end.py --setting=digits --baseline=d33c2e8    # and the same run at that commit

Settings (issue 15; docs/performance.md has the figures):
  digits         scikit-learn digits, columnfc, victim + 5 shadows, 50/25 epochs (train / fine-tune),
                 l1_unstructured 0.7, the default attacks (SAMIA + the paper's thresholds), attack models 30 epochs
  fashion_mnist  10,000 Fashion-MNIST records, small_cnn, victim + 5 shadows, 20/10 epochs, l1_unstructured 0.7,
                 SAMIA + the NN family + the threshold attacks, attack models 30 epochs

Each way runs in a fresh process (so no way inherits another's traced graphs or peak memory) with one
intra-op and one inter-op thread, on an empty temporary run root. Stage times are exclusive (a pruning stage
that first trains its original counts that training under `train originals`). CPU-s are process CPU time
(all threads) plus waited-for children; peak RSS is the process's maximum resident set. Memory per stage: `+peak`
is how much the process's peak RSS (ru_maxrss) rose while the stage ran (exclusive, like the times), `RSS after`
the resident set (VmRSS) when its last call returned: the stage with the largest `+peak` is the one to cut.

`--baseline=COMMIT` runs the same configuration once more with the `train_prune` binary of COMMIT (exported
from git into a temporary directory, the installed stack, one thread each way) for the "before" figures; the
binary's flags are the ones this command line has, so both runs do the same work.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS = {"digits": (40.0, None), "fashion_mnist": (300.0, 1024.0)}  # (CPU-s, peak RSS MiB)


def experiment_config(setting: str, run_root: str, stacked: str):
    from tfprune_mia import ExperimentConfig
    from tfprune_mia.pruning import PruneConfig
    from tfprune_mia.training import TrainConfig

    common = dict(run_root=run_root, num_shadows=5, prune=PruneConfig("l1_unstructured", 0.7), attack_epochs=30,
                  stacked_training=stacked)
    if setting == "digits":
        return ExperimentConfig(dataset="digits", model="columnfc", train=TrainConfig(epochs=50),
                                finetune=TrainConfig(epochs=25), **common)
    return ExperimentConfig(dataset="fashion_mnist", model="small_cnn", max_samples=10_000,
                            train=TrainConfig(epochs=20), finetune=TrainConfig(epochs=10),
                            attacks=("samia", "nn", "nn_cls", "nn_top3", "conf", "entropy", "mentr"), **common)


def current_rss_mib() -> float:
    """The resident set now (VmRSS; Linux), unlike ru_maxrss which only ever grows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def totals_since(started_wall: float, started_cpu: float) -> dict:
    """A whole run's wall seconds, CPU-s (this process + its waited-for children) and peak RSS."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.perf_counter() - started_wall,
            "cpu": time.process_time() - started_cpu + children.ru_utime + children.ru_stime,
            "peak_rss_mib": peak_rss_mib()}


class StageClock:
    """Exclusive wall time, CPU time and peak-RSS rise per stage: a stage entered inside another is subtracted
    from the outer. Entry: [wall, cpu, calls, peak rise MiB, RSS after MiB, peak after MiB]."""

    def __init__(self):
        self.totals = {}
        self._stack = []

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            # start wall, start cpu, start peak, then the nested stages' wall, cpu and peak rise
            frame = [time.perf_counter(), time.process_time(), peak_rss_mib(), 0.0, 0.0, 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                self._stack.pop()
                wall, cpu = time.perf_counter() - frame[0], time.process_time() - frame[1]
                peak = peak_rss_mib()
                rise = peak - frame[2]
                entry = self.totals.setdefault(stage, [0.0, 0.0, 0, 0.0, 0.0, 0.0])
                entry[0] += wall - frame[3]
                entry[1] += cpu - frame[4]
                entry[2] += 1
                entry[3] += rise - frame[5]
                entry[4], entry[5] = current_rss_mib(), peak
                if self._stack:
                    self._stack[-1][3] += wall
                    self._stack[-1][4] += cpu
                    self._stack[-1][5] += rise
        return timed


def instrument(clock: StageClock) -> None:
    """Wrap the pipeline's stage functions (benchmark only: the library itself is unchanged)."""
    from tfprune_mia.pipeline import experiment, stages

    cls = stages.Stages
    cls.dataset = property(clock.wrap("data + split", cls.dataset.fget))
    cls.split = property(clock.wrap("data + split", cls.split.fget))
    cls._train_original = clock.wrap("train originals (one by one)", cls._train_original)
    if hasattr(cls, "_train_stacked"):
        cls._train_stacked = clock.wrap("train originals (stacked)", cls._train_stacked)
    cls._prune = clock.wrap("prune + fine-tune", cls._prune)
    cls._cached_signals = clock.wrap("signals", cls._cached_signals)
    from tfprune_mia.audit import core

    experiment.audit = clock.wrap("attacks: rest (scoring, divergence)", experiment.audit)
    make_attack = core.make_attack

    def made(name, *args, **kwargs):
        attack = make_attack(name, *args, **kwargs)
        attack.fit = clock.wrap(f"attack fit: {name}", attack.fit)
        return attack

    core.make_attack = made
    core.bootstrap_intervals = clock.wrap("attack metrics: bootstrap CIs", core.bootstrap_intervals)
    core.attack_metrics = clock.wrap("attack metrics: point + per class", core.attack_metrics)
    core.per_class_metrics = clock.wrap("attack metrics: point + per class", core.per_class_metrics)
    experiment._tf_privacy_suite = clock.wrap("TF Privacy suite", experiment._tf_privacy_suite)
    experiment._figures = clock.wrap("figures", experiment._figures)
    experiment.write_npz = clock.wrap("result files", experiment.write_npz)
    experiment.log_metrics = clock.wrap("result files", experiment.log_metrics)


def child(setting: str, stacked: str, out: str) -> None:
    """One cold run in this process; its figures as JSON to `out`."""
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    from tfprune_mia.backend import enable_determinism, tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    enable_determinism()  # as the binaries run
    from tfprune_mia import run_experiment

    import_wall, import_cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    import_rss, import_peak = current_rss_mib(), peak_rss_mib()
    clock = StageClock()
    instrument(clock)
    with tempfile.TemporaryDirectory() as run_root:
        config = experiment_config(setting, run_root, stacked)
        result = clock.wrap("run_experiment", run_experiment)(config)
        metas = [json.loads(path.read_text()) for path in Path(run_root).rglob("meta.json")]
        attacker = [meta["test_accuracy"] for meta in metas if meta["kind"] == "original" and meta["role"] != "victim"]
    figures = {
        "stages": {"import TensorFlow + package": [import_wall, import_cpu, 1, import_peak, import_rss, import_peak],
                   **clock.totals},
        **totals_since(started_wall, started_cpu),
        "auc": {setting_name: {name: round(attack.metrics["auc"], 3) for name, attack in audit.ran.items()}
                for setting_name, audit in result.settings.items()},
        "attacker_test_accuracy": attacker,
    }
    Path(out).write_text(json.dumps(figures))


def binary_flags(setting: str, run_root: str) -> list:
    """The train_prune flags of experiment_config(setting) (flags existing since the earliest baseline)."""
    config = experiment_config(setting, run_root, "off")
    train, finetune, prune = config.train, config.finetune, config.prune
    return [f"--dataset={config.dataset}", f"--model={config.model}", f"--run_root={run_root}",
            f"--seed={config.seed}", f"--num_shadows={config.num_shadows}", f"--epochs={train.epochs}",
            f"--finetune_epochs={finetune.epochs}", f"--batch_size={train.batch_size}",
            f"--learning_rate={train.learning_rate}", f"--weight_decay={train.weight_decay}",
            f"--patience={train.patience}", f"--pruner={prune.pruner}", f"--sparsity={prune.sparsity}",
            f"--attacks={','.join(config.attacks)}", f"--attack_epochs={config.attack_epochs}",
            f"--bootstrap_resamples={config.bootstrap_resamples}", f"--max_samples={config.max_samples}",
            f"--num_perturbations={config.signals.num_perturbations}",
            f"--perturbation_epsilon={config.signals.epsilon}"]


def baseline_child(source: str, flags_json: str, out: str) -> None:
    """The train_prune binary of the package under `source`, one thread each way, in this process."""
    import runpy

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    sys.path.insert(0, source)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.argv = ["train_prune", *json.loads(flags_json)]
    try:
        runpy.run_module("tfprune_mia.bin.train_prune", run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise
    Path(out).write_text(json.dumps(totals_since(started_wall, started_cpu)))


def run_baseline(commit: str, setting: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as source, tempfile.TemporaryDirectory() as run_root, \
            tempfile.NamedTemporaryFile(suffix=".json") as out:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "tfprune_mia"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
        flags_json = json.dumps(binary_flags(setting, run_root))
        baseline_env = {**env, "PYTHONPATH": source, "TF_USE_LEGACY_KERAS": "1"}
        done = subprocess.run([sys.executable, __file__, "--baseline_child", source, flags_json, out.name],
                              env=baseline_env, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            sys.exit(f"{setting} at {commit} failed with exit code {done.returncode}")
        return json.loads(Path(out.name).read_text())


def report(setting: str, stacked: str, figures: dict) -> None:
    goal_cpu, goal_rss = GOALS[setting]
    print(f"\n== {setting}, stacked_training={stacked} ==")
    print(f"{'stage':34s} {'calls':>5s} {'wall s':>8s} {'CPU-s':>8s} {'CPU share':>9s} {'+peak MiB':>9s} "
          f"{'RSS after':>9s} {'peak after':>10s}")
    stages = dict(figures["stages"])
    run = stages.pop("run_experiment")
    rows = sorted(stages.items(), key=lambda item: -item[1][1])
    # run_experiment's own exclusive share: what no instrumented stage covers (model loads, caches, results JSON).
    for name, (wall, cpu, calls, rise, rss, peak) in rows + [("other (run_experiment itself)", run)]:
        print(f"{name:34s} {calls:5d} {wall:8.1f} {cpu:8.1f} {100 * cpu / figures['cpu']:8.1f}% {rise:9.0f} "
              f"{rss:9.0f} {peak:10.0f}")
    print(f"total: {figures['wall']:.1f} s wall, {figures['cpu']:.1f} CPU-s (process + children; goal <= "
          f"{goal_cpu:g}: {'met' if figures['cpu'] <= goal_cpu else 'NOT met'}), peak RSS "
          f"{figures['peak_rss_mib']:.0f} MiB" + (f" (goal <= {goal_rss:g}: "
                                                   f"{'met' if figures['peak_rss_mib'] <= goal_rss else 'NOT met'})"
                                                   if goal_rss else ""))
    if figures.get("attacker_test_accuracy"):
        accuracy = figures["attacker_test_accuracy"]
        print(f"attacker's original models: test accuracy mean {sum(accuracy) / len(accuracy):.3f}, "
              f"range {min(accuracy):.3f}-{max(accuracy):.3f} ({len(accuracy)} models)")
    print("AUC: " + "; ".join(f"{name}: " + ", ".join(f"{attack} {auc:.3f}" for attack, auc in aucs.items())
                              for name, aucs in figures["auc"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(GOALS), action="append",
                        help="setting(s) to run (default: both)")
    parser.add_argument("--stacked_training", default="auto",
                        help="comma-separated ways to run each setting: auto, off or both (default auto)")
    parser.add_argument("--baseline", default="",
                        help="also run each setting with the train_prune binary of this commit (the 'before')")
    parser.add_argument("--child", nargs=3, metavar=("SETTING", "STACKED", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline_child", nargs=3, metavar=("SOURCE", "FLAGS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.baseline_child:
        baseline_child(*args.baseline_child)
        return
    print(f"load average at start: {os.getloadavg()}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TFPRUNE_MIA_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for setting in args.setting or sorted(GOALS):
        for stacked in args.stacked_training.split(","):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                done = subprocess.run([sys.executable, __file__, "--child", setting, stacked, out.name], env=env)
                if done.returncode != 0:
                    sys.exit(f"{setting} (stacked_training={stacked}) failed with exit code {done.returncode}")
                now = json.loads(Path(out.name).read_text())
                report(setting, stacked, now)
            print(f"load average now: {os.getloadavg()}", flush=True)
        if args.baseline:
            before = run_baseline(args.baseline, setting, env)
            print(f"before ({args.baseline}, its train_prune binary): {before['wall']:.1f} s wall, "
                  f"{before['cpu']:.1f} CPU-s, peak RSS {before['peak_rss_mib']:.0f} MiB -> now "
                  f"{now['cpu']:.1f} CPU-s ({before['cpu'] / now['cpu']:.2f}x cheaper), "
                  f"{now['peak_rss_mib']:.0f} MiB")
            print(f"load average now: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
