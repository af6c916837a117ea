"""A study: the grid datasets x models x pruners x sparsities x defenses x seeds, one cached experiment per point,
run through keras-tuner's oracle so that its chief/worker mode spreads the trials over processes and machines.

keras-tuner owns the distribution: a chief process (KERASTUNER_TUNER_ID containing "chief") serves the oracle over
gRPC at KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT and workers (any other KERASTUNER_TUNER_ID) ask it for trials;
without those variables one process runs every trial itself. The oracle's state (which trial ran where, which
finished) lives in the study directory, any `tf.io.gfile` path; each trial's models and results live in the run
root, where `run_experiment` reuses whatever is already there. So a killed chief or worker loses no finished trial:
restarted with the same command (and, for a worker, the same KERASTUNER_TUNER_ID) it resumes where it stopped.

The oracle is a grid over one `trial_index` hyperparameter rather than keras-tuner's GridSearchOracle, because in
keras-tuner 1.4.8 that oracle (a) derives each new point from a trial that has ended (the first trial excepted), so
with three workers the third one idles while two run, and (b) keeps its traversal in memory only, so a restarted
chief hands out an already finished point again instead of the next unstarted one.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras_tuner

from tfprune_mia.audit.results import ExperimentResult
from tfprune_mia.backend import tf
from tfprune_mia.defenses import DefenseConfig
from tfprune_mia.errors import ConfigError, TfpruneError
from tfprune_mia.io import stable_hash
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import result_path, run_experiment
from tfprune_mia.pipeline.sweep import PruneFactory, same_pruner_options

HPARAM = "trial_index"
OBJECTIVE = "pruned_test_accuracy"  # keras-tuner needs one; a study ranks nothing, it only runs every trial
TrialStatus = keras_tuner.engine.trial.TrialStatus

# (defense name, strength or None for the defense's default) -> that defense's full configuration.
DefenseFactory = Callable[[str, Optional[float]], DefenseConfig]


@dataclasses.dataclass(frozen=True)
class StudyGrid:
    """The axes of a study; the empty model "" is each dataset's default model."""

    datasets: Tuple[str, ...]
    models: Tuple[str, ...]
    pruners: Tuple[str, ...]
    sparsities: Tuple[float, ...]
    defenses: Tuple[Tuple[str, Optional[float]], ...]
    seeds: Tuple[int, ...]

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name):
                raise ConfigError(f"the study has no {field.name}; pass e.g. --study_{field.name}=... "
                                  "(each axis needs at least one value)")


def parse_defenses(values: Sequence[str]) -> Tuple[Tuple[str, Optional[float]], ...]:
    """`none`, `ppb`, `ppb:4` -> (name, strength); no strength means the defense's default."""
    parsed = []
    for value in values:
        name, _, strength = value.partition(":")
        if not strength:
            parsed.append((name, None))
            continue
        try:
            parsed.append((name, float(strength)))
        except ValueError:
            raise ConfigError(f"defense {value!r}: the strength after ':' is not a number; pass e.g. "
                              "--study_defenses=none,ppb:4") from None
    return tuple(parsed)


def parse_numbers(values: Sequence[str], kind: type, flag: str) -> Tuple:
    try:
        return tuple(kind(value) for value in values)
    except ValueError:
        raise ConfigError(f"--{flag}={','.join(values)}: every value must be a {kind.__name__}") from None


def same_defense_options(base: DefenseConfig) -> DefenseFactory:
    """Keep `base`'s options for its own defense (only the strength changes); other defenses get defaults."""
    def factory(name: str, strength: Optional[float]) -> DefenseConfig:
        if name == base.name:
            return dataclasses.replace(base, strength=base.strength if strength is None else strength)
        return DefenseConfig(name, strength)
    return factory


def study_configs(base: ExperimentConfig, grid: StudyGrid, make_prune: Optional[PruneFactory] = None,
                  make_defense: Optional[DefenseFactory] = None) -> List[ExperimentConfig]:
    """Every trial's configuration, each built and validated before any work starts.

    Ordered dataset, model, seed, defense, pruner, sparsity, so neighbouring trials share trained originals.
    A point that does not validate (e.g. mcmia with an l1 pruner) fails the whole study here, naming the point.
    """
    make_prune = make_prune or same_pruner_options(base.prune)
    make_defense = make_defense or same_defense_options(base.defense)
    shadows_follow = base.shadow_prune == base.prune
    configs: List[ExperimentConfig] = []
    for dataset in grid.datasets:
        for model in grid.models:
            for seed in grid.seeds:
                for defense_name, strength in grid.defenses:
                    for pruner in grid.pruners:
                        for sparsity in grid.sparsities:
                            point = (f"dataset={dataset} model={model or '(default)'} seed={seed} "
                                     f"defense={defense_name}{'' if strength is None else f':{strength:g}'} "
                                     f"pruner={pruner} sparsity={sparsity:g}")
                            try:
                                prune = make_prune(pruner, float(sparsity))
                                config = dataclasses.replace(
                                    base, dataset=dataset, model=model, seed=int(seed), prune=prune,
                                    shadow_prune=prune if shadows_follow else base.shadow_prune,
                                    defense=make_defense(defense_name, strength),
                                    adaptive=base.adaptive and defense_name != "none")
                            except TfpruneError as err:
                                raise ConfigError(f"study point {point}: {err}") from None
                            if config not in configs:
                                configs.append(config)
    return configs


def study_id(configs: Sequence[ExperimentConfig]) -> str:
    """Changes with any trial's configuration: a changed grid gets a new oracle instead of a confused old one."""
    return "study-" + stable_hash([c.to_dict() for c in configs], 10)


def default_study_dir(configs: Sequence[ExperimentConfig]) -> str:
    return os.path.join(str(configs[0].run_root), "studies", study_id(configs))


def write_manifest(study_dir: str, configs: Sequence[ExperimentConfig]) -> str:
    """study.json: every trial's index, configuration and result file, for `report` and for people."""
    path = os.path.join(study_dir, "study.json")
    manifest = {"study": study_id(configs), "run_root": str(configs[0].run_root),
                "trials": [{"index": i, "config": c.to_dict(), "result": str(result_path(c))}
                           for i, c in enumerate(configs)]}
    tf.io.gfile.makedirs(study_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def trial_groups(configs: Sequence[ExperimentConfig]) -> List[str]:
    """Trials of one group train the same originals (victim, shadows, references)."""
    return [f"{c.base_dir}/{c.original_key()}" for c in configs]


class StudyOracle(keras_tuner.Oracle):
    """A grid oracle over the study's trials (one `trial_index` hyperparameter, every value run once).

    Hands out the first trial not yet started whose originals are not being trained by another worker right now
    (its group is idle, or one of its trials has finished and cached them); otherwise answers IDLE and the worker
    asks again shortly. So parallel workers never train the same originals twice.
    """

    def __init__(self, groups: Sequence[str], **kwargs):
        hyperparameters = keras_tuner.HyperParameters()
        hyperparameters.Int(HPARAM, 0, max(len(groups) - 1, 0))
        super().__init__(objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=len(groups),
                         hyperparameters=hyperparameters, allow_new_entries=False, tune_new_entries=False,
                         max_consecutive_failed_trials=max(3, len(groups) + 1), **kwargs)
        self.groups = list(groups)
        self._restored_ongoing: Dict[str, object] = {}

    def _index(self, trial) -> int:
        return int(trial.hyperparameters.values[HPARAM])

    def populate_space(self, trial_id):
        started = {self._index(t) for t in self.trials.values()}
        busy = {self.groups[self._index(t)] for t in self.ongoing_trials.values()}
        warm = {self.groups[self._index(t)] for t in self.trials.values() if t.status == TrialStatus.COMPLETED}
        pending = [i for i in range(len(self.groups)) if i not in started]
        for index in pending:
            if self.groups[index] in warm or self.groups[index] not in busy:
                return {"status": TrialStatus.RUNNING, "values": {HPARAM: index}}
        return {"status": TrialStatus.IDLE if pending or self.ongoing_trials else TrialStatus.STOPPED,
                "values": None}

    def set_state(self, state):
        super().set_state(state)
        self._restored_ongoing = dict(self.ongoing_trials)

    def reload(self):
        super().reload()
        # keras-tuner re-queues every trial that was running when the chief stopped, so a surviving worker and a
        # second one would then run it at once. A study leaves each with its worker: the worker that survived
        # reports it, a restarted one (same KERASTUNER_TUNER_ID) gets it back and resumes from the cached stages.
        kept = {trial.trial_id for trial in self._restored_ongoing.values()}
        self._retry_queue = [trial_id for trial_id in self._retry_queue if trial_id not in kept]
        self.ongoing_trials = dict(self._restored_ongoing)
        # keras-tuner saves its display state before recording a trial's start, so the newest running trials may
        # lack one; ending them would then raise inside the chief and fail the worker's report.
        for number, trial_id in enumerate(self.start_order, start=1):
            self._display.trial_start.setdefault(trial_id, datetime.datetime.now())
            self._display.trial_number.setdefault(trial_id, number)
        # A failed trial gets another run on every restart: its cause (missing data, a full disk) may be fixed,
        # and everything it finished before failing is cached.
        for trial in self.trials.values():
            if trial.status in (TrialStatus.FAILED, TrialStatus.INVALID) and trial.trial_id not in self._retry_queue:
                self._retry_queue.append(trial.trial_id)
                self._run_times[trial.trial_id] = 0
                if trial.trial_id in self.end_order:
                    self.end_order.remove(trial.trial_id)


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    index: int
    config: ExperimentConfig
    result: Optional[ExperimentResult]
    computed: bool  # False: the result existed already (finished earlier, by this or another worker)
    tuner_id: str = ""


class StudyTuner(keras_tuner.Tuner):
    """A keras-tuner Tuner whose trial is one cached experiment of the study (no hypermodel)."""

    def __init__(self, configs: Sequence[ExperimentConfig], study_dir: str,
                 run: Callable[[ExperimentConfig], ExperimentResult] = run_experiment, poll_seconds: float = 2.0,
                 on_trial: Optional[Callable[[TrialRecord], None]] = None):
        self.configs = list(configs)
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        project = os.path.join(study_dir, "oracle")
        oracle_file_existed = tf.io.gfile.exists(os.path.join(project, "oracle.json"))
        tuner_file_existed = tf.io.gfile.exists(os.path.join(project, f"{tuner_id}.json"))
        super().__init__(oracle=StudyOracle(trial_groups(self.configs)), directory=study_dir,
                         project_name="oracle", overwrite=False)
        if oracle_file_existed and not tuner_file_existed and not self._is_worker():
            # The oracle was last served under another tuner id (a single-process run now continued as a chief).
            self.oracle.reload()
        self.study_dir, self.run_experiment, self.poll_seconds, self.on_trial = study_dir, run, poll_seconds, on_trial
        self.records: List[TrialRecord] = []
        self._waiting = False

    def pre_create_trial(self):
        # keras-tuner asks again at once after an IDLE answer; a pause keeps idle workers off the CPU and the chief.
        if self._waiting:
            time.sleep(self.poll_seconds)
        self._waiting = True

    def on_trial_begin(self, trial):
        self._waiting = False
        super().on_trial_begin(trial)

    def run_trial(self, trial, *args, **kwargs):
        index = int(trial.hyperparameters.get(HPARAM))
        config = self.configs[index]
        computed = not result_path(config).exists()
        started = time.time()
        result = self.run_experiment(config)
        record = TrialRecord(index, config, result, computed, self.tuner_id)
        self.records.append(record)
        self._write_event(record, time.time() - started)
        if self.on_trial is not None:
            self.on_trial(record)
        return trial_metrics(result)

    def _write_event(self, record: TrialRecord, seconds: float) -> None:
        """One small file per finished trial run (no appends: GCS objects cannot be appended to)."""
        directory = os.path.join(self.study_dir, "events")
        tf.io.gfile.makedirs(directory)
        name = f"{record.index:05d}-{self.tuner_id}-{time.time_ns()}.json"
        with tf.io.gfile.GFile(os.path.join(directory, name), "w") as handle:
            handle.write(json.dumps({"index": record.index, "tuner_id": self.tuner_id, "computed": record.computed,
                                     "result": record.result.path, "seconds": seconds}) + "\n")

    # A study keeps no Keras model per trial (the run root holds them): nothing to save or load here.
    def save_model(self, trial_id, model, step=0):
        return None

    def load_model(self, trial):
        raise NotImplementedError("a study trial's models live in its run directory; load its result instead")


def trial_metrics(result: ExperimentResult) -> Dict[str, float]:
    """The trial's numbers keras-tuner records: accuracies and the strongest attack's AUC, original vs pruned."""
    metrics = {OBJECTIVE: float(result.pruned.model.test_accuracy),
               "original_test_accuracy": float(result.original.model.test_accuracy)}
    for setting in ("original", "pruned"):
        best = result[setting].best("auc")
        if best is not None:
            metrics[f"{setting}_best_auc"] = float(best["auc"])
    return metrics


@dataclasses.dataclass(frozen=True)
class StudyOutcome:
    study_dir: str
    configs: Tuple[ExperimentConfig, ...]
    records: Tuple[TrialRecord, ...]  # the trials this process ran
    role: str  # "single", "chief" or "worker"
    missing: Tuple[int, ...] = ()  # trials without a result file at the end (failed); chief and single only
    failures: Tuple[str, ...] = ()


def process_role() -> str:
    from keras_tuner.src.distribute import utils as distribute

    if not distribute.has_chief_oracle():
        return "single"
    return "chief" if distribute.is_chief_oracle() else "worker"


def run_study(configs: Sequence[ExperimentConfig], study_dir: Optional[str] = None,
              run: Callable[[ExperimentConfig], ExperimentResult] = run_experiment, poll_seconds: float = 2.0,
              on_trial: Optional[Callable[[TrialRecord], None]] = None) -> StudyOutcome:
    """Run (or resume) the study in this process's role: the whole grid alone, or its part as chief / worker."""
    if not configs:
        raise ConfigError("empty study; pass at least one value on every --study_* axis")
    study_dir = study_dir or default_study_dir(configs)
    role = process_role()
    if role != "worker":
        write_manifest(study_dir, configs)
    tuner = StudyTuner(configs, study_dir, run, poll_seconds, on_trial)
    tuner.search()
    if role == "worker":
        return StudyOutcome(study_dir, tuple(configs), tuple(tuner.records), role)
    missing = tuple(i for i, c in enumerate(configs) if not result_path(c).exists())
    failures = []
    for trial in tuner.oracle.trials.values():
        index = int(trial.hyperparameters.values[HPARAM])
        if index in missing and trial.message:
            failures.append(f"trial {index}: {trial.message.strip().splitlines()[-1]}")
    return StudyOutcome(study_dir, tuple(configs), tuple(tuner.records), role, missing, tuple(failures))


def study_table(outcome: StudyOutcome) -> str:
    """One line per trial: the grid point, its status and result file."""
    done = {record.index: record for record in outcome.records}
    lines = [f"study {os.path.basename(outcome.study_dir.rstrip('/'))} ({outcome.role}): {len(outcome.configs)} "
             f"trials; this process ran {len(outcome.records)} "
             f"({sum(r.computed for r in outcome.records)} computed, "
             f"{sum(not r.computed for r in outcome.records)} reused)"]
    for index, config in enumerate(outcome.configs):
        if outcome.role == "worker" and index not in done:
            continue
        if index in done:
            status = "computed" if done[index].computed else "reused"
        else:
            status = "missing" if index in outcome.missing else "done"
        lines.append(f"  [{index:3d}] {config.dataset}/{config.model} seed {config.seed} {config.defense.key} "
                     f"{config.prune.pruner}@{config.prune.sparsity:g}: {status}  {result_path(config)}")
    lines += [f"  {failure}" for failure in outcome.failures]
    lines.append(f"study directory: {outcome.study_dir}")
    return "\n".join(lines)
