"""One configuration of the paper's flow, every stage cached in the run directory.

dataset -> split -> original victim and shadows -> pruned victim and shadows -> signals -> attacks -> metrics.
Each stage's output lives under a key derived from everything it depends on and is written atomically, with
its meta.json written last as the completion marker: a second run with another sparsity reuses the trained
originals, a killed run resumes at the first unfinished stage, and nothing finished is ever rewritten.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

import tfprune_mia
from tfprune_mia import faults
from tfprune_mia.attacks import ATTACKS, AttackContext, MembershipSet, SignalConfig, Signals, compute_signals
from tfprune_mia.attacks import make_attack
from tfprune_mia.attacks.divergence import divergence_report
from tfprune_mia.attacks.metrics import attack_metrics, bootstrap_intervals, per_class_metrics
from tfprune_mia.attacks.base import ReferenceSignals
from tfprune_mia.attacks.tfp_bridge import OptionalDependencyError, run_tfp_suite
from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.data import DATASETS, load_dataset
from tfprune_mia.data.base import Dataset
from tfprune_mia.data.splits import Part, Split, load_or_make_split
from tfprune_mia.defenses import DefenseConfig, DefenseContext, make_defense
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import atomic_path, read_json, stable_hash, write_json, write_npz
from tfprune_mia.models import MODELS, build_model
from tfprune_mia.pruning import PruneConfig, prune_and_finetune_detailed
from tfprune_mia.pruning.export import footprint
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.training import TrainConfig, evaluate_accuracy, fit_classifier

# Bump when the layout or meaning of cached artefacts changes; older run directories are then refused.
FORMAT_VERSION = 1
DEFAULT_ATTACKS = ("samia", "conf", "entropy", "mentr")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    dataset: str = "digits"
    model: str = ""  # empty: the dataset's default model
    data_dir: Optional[str] = None
    seed: int = 7
    num_shadows: int = 5
    train: TrainConfig = TrainConfig()
    finetune: TrainConfig = TrainConfig(epochs=15)
    prune: PruneConfig = PruneConfig()
    shadow_prune: Optional[PruneConfig] = None  # None: the attacker knows the victim's pruning
    attacks: Tuple[str, ...] = DEFAULT_ATTACKS
    attack_epochs: int = 100
    signals: SignalConfig = SignalConfig()
    run_root: str = "runs"
    # Extra reference models for the online LiRA/RMIA (trained, like shadows, on random halves of the victim's
    # train + test pool, in complementary pairs); built only when a selected attack needs IN models.
    num_reference_models: int = 2
    bootstrap_resamples: int = 200  # 95% intervals of every attack metric; 0 disables them
    # Applied while fine-tuning the pruned victim. The attacker's shadows are always also pruned without it
    # (non-adaptive attack); adaptive=True also prunes them with it and reports that attack beside.
    defense: DefenseConfig = DefenseConfig()
    adaptive: bool = False
    # Use a seeded random subset of this many records (0: all), for affordable CPU runs; own run directory.
    max_samples: int = 0

    def __post_init__(self):
        spec = DATASETS.get(self.dataset)
        if not self.model:
            object.__setattr__(self, "model", spec.default_model)
        MODELS.get(self.model)
        if self.shadow_prune is None:
            object.__setattr__(self, "shadow_prune", self.prune)
        if self.num_shadows < 1:
            raise ConfigError(f"num_shadows={self.num_shadows}: the attack needs at least 1 shadow model")
        if not self.attacks:
            raise ConfigError("no attacks selected; pass e.g. --attacks=samia,conf")
        for name in self.attacks:
            ATTACKS.get(name)
        if self.attack_epochs < 1:
            raise ConfigError(f"attack_epochs={self.attack_epochs}: must be at least 1")
        if self.bootstrap_resamples < 0:
            raise ConfigError(f"bootstrap_resamples={self.bootstrap_resamples}: must be >= 0 (0 disables CIs)")
        if self.num_reference_models < 0 or self.num_reference_models % 2:
            raise ConfigError(f"num_reference_models={self.num_reference_models}: must be an even number >= 0 "
                              "(models come in complementary pairs so each sample is IN for half of them)")
        if self.max_samples < 0 or 0 < self.max_samples < 20:
            raise ConfigError(f"max_samples={self.max_samples}: use 0 (all records) or at least 20")
        if self.adaptive and not self.defense.enabled:
            raise ConfigError("--adaptive needs a defense to adapt to; pass e.g. --defense=ppb")
        required = _required_pruner(self.defense)
        pruners = {self.prune.pruner} | ({self.shadow_prune.pruner} if self.adaptive else set())
        if required and pruners != {required}:
            raise ConfigError(f"defense {self.defense.name} is built on the {required} pruner; pass "
                              f"--pruner={required} (and the same for the shadows with --adaptive)")
        needs_in = [name for name in self.attacks if ATTACKS.get(name).needs_in_models]
        if needs_in and self.num_reference_models < 2:
            raise ConfigError(f"attacks {', '.join(needs_in)} need IN reference models; pass "
                              "--num_reference_models=2 (or more, even)")

    @property
    def uses_reference_models(self) -> bool:
        return any(ATTACKS.get(name).needs_in_models for name in self.attacks)

    @property
    def base_dir(self) -> Path:
        subset = f"-n{self.max_samples}" if self.max_samples else ""
        return Path(self.run_root) / f"{self.dataset}{subset}-{self.model}-seed{self.seed}"

    @property
    def settings(self) -> Tuple[str, ...]:
        """The attacked (victim, shadows) pairs: `pruned` = non-adaptive shadows (no defense)."""
        return ("original", "pruned") + (("pruned_adaptive",) if self.adaptive else ())

    def defense_for(self, role: str, setting: str) -> DefenseConfig:
        """The victim gets the defense; the attacker's models (shadows, references) only when adaptive."""
        if role == "victim" or setting == "pruned_adaptive":
            return self.defense
        return DefenseConfig()

    def original_key(self) -> str:
        return "original-" + stable_hash([FORMAT_VERSION, self.dataset, self.model, self.seed,
                                          dataclasses.asdict(self.train)], 8)

    def pruned_key(self, prune: PruneConfig, defense: DefenseConfig = DefenseConfig()) -> str:
        # Undefended keys are unchanged, so every defense's non-adaptive shadows share one cached set.
        parts = [self.original_key(), dataclasses.asdict(prune), dataclasses.asdict(self.finetune)]
        if not defense.enabled:
            return f"{prune.key}-" + stable_hash(parts, 8)
        return f"{prune.key}-{defense.key}-" + stable_hash(parts + [defense.relevant()], 8)

    def result_key(self) -> str:
        shadow = "" if self.shadow_prune == self.prune else f"_shadow-{self.shadow_prune.key}"
        defense = f"_{self.defense.key}{'-adaptive' if self.adaptive else ''}" if self.defense.enabled else ""
        return f"{self.prune.key}{shadow}{defense}-" + stable_hash(self.to_dict(), 8)

    def to_dict(self) -> Dict:
        config = dataclasses.asdict(self)
        config.pop("run_root")
        return config


def _required_pruner(defense: DefenseConfig) -> Optional[str]:
    return make_defense(defense).required_pruner


def derived_seed(*parts) -> int:
    """A seed per (experiment seed, role, stage), independent of the order in which stages run."""
    return int(stable_hash(list(parts), 8), 16) % (2**31)


def package_versions() -> Dict[str, str]:
    import sklearn
    import tensorflow_model_optimization as tfmot

    return {"tfprune_mia": tfprune_mia.__version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "tensorflow_model_optimization": tfmot.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


class ModelStore:
    """Trained models on disk: model.h5 (full Keras model) + meta.json written last as the completion marker."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    @property
    def model_path(self) -> Path:
        return self.directory / "model.h5"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def meta(self) -> Dict:
        meta = read_json(self.meta_path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{self.directory} was written by an incompatible tfprune_mia version "
                                  f"(format {meta.get('format_version')}, expected {FORMAT_VERSION}); "
                                  "use another --run_root or delete that directory")
        return meta

    def load(self) -> keras.Model:
        self.meta()
        try:
            # A run directory is data: safe mode refuses to rebuild a Lambda layer from the marshalled Python
            # bytecode an h5 file can carry (load_model's own safe_mode= covers only the .keras format).
            with keras.src.saving.serialization_lib.SafeModeScope(True):
                return keras.models.load_model(str(self.model_path), compile=False)
        except (OSError, ValueError, KeyError, TypeError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise CheckpointError(f"{self.model_path} is missing, corrupt or unsafe ({reason}); delete "
                                  f"{self.directory} and re-run to retrain it") from None

    def save(self, net: keras.Model, meta: Dict) -> None:
        with atomic_path(self.model_path) as tmp:
            net.save(str(tmp), save_format="h5")
        faults.point("stage.model_saved")
        write_json(self.meta_path, {"format_version": FORMAT_VERSION, **meta})


class Experiment:
    def __init__(self, config: ExperimentConfig, require_cached: bool = False):
        self.config = config
        # require_cached: the `attack` binary's mode, which must never train: a missing model is an error.
        self.require_cached = require_cached
        self._dataset: Optional[Dataset] = None
        self._split: Optional[Split] = None

    # -- data -------------------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = subsample(load_dataset(self.config.dataset, self.config.data_dir),
                                      self.config.max_samples, self.config.seed)
        return self._dataset

    @property
    def split(self) -> Split:
        if self._split is None:
            self._split = load_or_make_split(self.config.base_dir / "split.npz", len(self.dataset),
                                             self.config.seed, self.config.num_shadows)
            # Before any training: a tampered or stale split must not silently bias the privacy numbers.
            check_balanced_disjoint(self._split)
        return self._split

    def part(self, role: str) -> Part:
        """The split of a role; `reference_<i>` are the attacker's online reference models: a random half of
        the victim's train + test pool (pair 2k, 2k+1 take complementary halves), early-stopped on the
        victim's dev split, which is therefore a non-member of every model (RMIA's population)."""
        if not role.startswith("reference_"):
            return self.split.part(role)
        index = int(role.split("_", 1)[1])
        victim = self.split.victim
        pool = np.concatenate([victim.train, victim.test])
        order = np.random.default_rng(derived_seed(self.config.seed, "reference", index // 2)).permutation(len(pool))
        halves = np.sort(pool[order[:len(pool) // 2]]), np.sort(pool[order[len(pool) // 2:]])
        return Part(halves[index % 2], victim.dev, halves[1 - index % 2])

    @property
    def reference_roles(self) -> List[str]:
        return [f"reference_{i}" for i in range(self.config.num_reference_models)]

    def _refuse_training(self, store: "ModelStore", role: str) -> None:
        if self.require_cached:
            raise CheckpointError(f"no cached {role} model at {store.directory}; run train_prune first with the "
                                  "same flags (it trains and caches every model the attacks need)")

    def arrays(self, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.dataset.x[index], self.dataset.y[index]

    def model_accuracies(self, net: keras.Model, part: Part) -> Dict[str, float]:
        return {f"{name}_accuracy": evaluate_accuracy(net, *self.arrays(getattr(part, name)))
                for name in ("train", "dev", "test")}

    # -- models -----------------------------------------------------------------------------------------
    def original_store(self, role: str) -> ModelStore:
        return ModelStore(self.config.base_dir / self.config.original_key() / role)

    def pruned_store(self, role: str, defense: DefenseConfig = DefenseConfig()) -> ModelStore:
        prune = self.prune_config(role)
        return ModelStore(self.config.base_dir / self.config.pruned_key(prune, defense) / role)

    def stage(self, setting: str):
        """role -> ModelStore of the models attacked in `setting` (see ExperimentConfig.settings)."""
        if setting == "original":
            return self.original
        return lambda role: self.pruned(role, self.config.defense_for(role, setting))

    def defense_context(self, role: str, part: Part, seed: int) -> DefenseContext:
        return DefenseContext(self.arrays(part.train), self.arrays(part.dev), self.dataset.num_classes,
                              self.config.finetune, seed, member_index=part.train, reference_index=part.dev,
                              evaluation_index=part.test)

    def prune_config(self, role: str) -> PruneConfig:
        return self.config.prune if role == "victim" else self.config.shadow_prune

    def original(self, role: str) -> ModelStore:
        store = self.original_store(role)
        if store.exists():
            return store
        self._refuse_training(store, role)
        faults.point("stage.original")
        logging.info("training original %s", role)
        part = self.part(role)
        seed = derived_seed(self.config.seed, role, "original")
        set_seed(seed)
        net = build_model(self.config.model, self.dataset.input_shape, self.dataset.num_classes)
        started = time.time()
        fit = fit_classifier(net, self.arrays(part.train), self.arrays(part.dev), self.config.train,
                             store.directory / "work", seed=seed)
        store.save(net, {"role": role, "kind": "original", "seconds": time.time() - started,
                         "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "history": fit.history,
                         **self.model_accuracies(net, part), "sparsity": sparsity_report(net),
                         "train_config": dataclasses.asdict(self.config.train)})
        return store

    def pruned(self, role: str, defense: DefenseConfig = DefenseConfig()) -> ModelStore:
        store = self.pruned_store(role, defense)
        if store.exists():
            return store
        self._refuse_training(store, role)
        original = self.original(role).load()
        prune = self.prune_config(role)
        faults.point("stage.pruned")
        logging.info("pruning %s with %s, defense %s", role, prune.key, defense.key)
        part = self.part(role)
        # The same seed with and without the defense: defended and undefended models are paired comparisons.
        seed = derived_seed(self.config.seed, role, prune.key)
        set_seed(seed)
        started = time.time()
        defender = make_defense(defense)
        context = self.defense_context(role, part, seed)
        pruned = prune_and_finetune_detailed(original, prune, self.arrays(part.train), self.arrays(part.dev),
                                             self.config.finetune, store.directory / "work", seed=seed,
                                             loss_terms=defender.hooks(context))
        net, fit = pruned.model, pruned.fit
        defense_record = {"key": defense.key, "config": defense.relevant(), **defender.summary(context, fit)}
        if "epsilon" in defense_record:
            logging.info("%s: DP fine-tuning epsilon = %.3f at delta = %.3g", role, defense_record["epsilon"],
                         defense_record["delta"])
        # Pruning works in place on `original`: reload it as the reference for removed weights and footprint.
        reference = self.original(role).load()
        store.save(net, {"role": role, "kind": "pruned", "prune_config": dataclasses.asdict(prune),
                         "seconds": time.time() - started, "best_epoch": fit.best_epoch,
                         "epochs_run": fit.epochs_run, "history": fit.history,
                         **self.model_accuracies(net, part), "sparsity": sparsity_report(net, reference),
                         "footprint": footprint(net), "original_footprint": footprint(reference),
                         "pruner_info": pruned.info, "defense": defense_record,
                         "finetune_config": dataclasses.asdict(self.config.finetune)})
        return store

    # -- signals ----------------------------------------------------------------------------------------
    def signals_path(self, store: ModelStore, subset: str) -> Path:
        return store.directory / f"signals-{stable_hash(dataclasses.asdict(self.config.signals), 8)}-{subset}.npz"

    def signals(self, store: ModelStore, role: str, subset: str, net: Optional[keras.Model] = None) -> Signals:
        path = self.signals_path(store, subset)
        if path.exists():
            return Signals.load(path)
        net = net or store.load()
        index = getattr(self.part(role), subset)
        signals = compute_signals(net, *self.arrays(index), self.config.signals)
        signals.save(path)
        faults.point("stage.signals")
        return signals

    def load_unless_cached(self, store: ModelStore, subsets: Sequence[str]) -> Optional[keras.Model]:
        """The model, loaded once for all of `subsets` whose signals are not cached yet (None if all are)."""
        cached = all(self.signals_path(store, subset).exists() for subset in subsets)
        return None if cached else store.load()

    def membership(self, store: ModelStore, role: str) -> MembershipSet:
        """Members = the model's training split, non-members = its held-out test split."""
        net = self.load_unless_cached(store, ("train", "test"))
        return MembershipSet.from_parts(self.signals(store, role, "train", net),
                                        self.signals(store, role, "test", net))

    def target_signals(self, store: ModelStore, subset: str, net: Optional[keras.Model] = None) -> Signals:
        """A model's posteriors/logits (no sensitivity: no reference attack reads it) on the victim's `subset`
        (train = members, test = non-members, dev = population), cached beside the model."""
        path = self.signals_path(store, f"target-{subset}")
        if path.exists():
            return Signals.load(path)
        net = net or store.load()
        signals = compute_signals(net, *self.arrays(getattr(self.split.victim, subset)), self.config.signals,
                                  with_sensitivity=False)
        signals.save(path)
        return signals

    def reference_signals(self, setting: str) -> ReferenceSignals:
        """Every reference model's signals on the target samples (victim train then test, as the target
        MembershipSet) with IN masks, and everyone's signals on the victim dev split (the population).
        Reference models = the attacker's shadows (OUT for every target sample, being trained on the shadow
        half) plus, for online attacks, the reference_<i> models trained on halves of the target pool."""
        stage = self.stage(setting)
        victim = self.split.victim
        pool = np.concatenate([victim.train, victim.test])
        roles = self.split.roles[1:] + (self.reference_roles if self.config.uses_reference_models else [])
        models, population, is_in = [], [], []
        subsets = ("train", "test", "dev")
        for role in roles:
            store = stage(role)
            net = self.load_unless_cached(store, [f"target-{subset}" for subset in subsets])
            train, test, dev = (self.target_signals(store, subset, net) for subset in subsets)
            models.append(Signals.concat([train, test]))
            population.append(dev)
            is_in.append(np.isin(pool, self.part(role).train))
        population_target = self.target_signals(stage("victim"), "dev")
        return ReferenceSignals(tuple(models), np.stack(is_in), population_target, tuple(population))

    # -- attacks ----------------------------------------------------------------------------------------
    def attack_setting(self, setting: str) -> Tuple[Dict, Dict[str, np.ndarray], MembershipSet]:
        """Attack the `original` or `pruned` victim with attacks trained on correspondingly made shadows.

        Every attack gets the same metrics from its scores: point estimates, bootstrap 95% intervals
        ("ci95") and per-class slices. An attack whose optional package is missing is recorded as skipped."""
        stage = self.stage(setting)
        roles = self.split.roles
        shadow = MembershipSet.concat([self.membership(stage(role), role) for role in roles[1:]])
        target = self.membership(stage("victim"), "victim")
        check_balanced_disjoint(self.split)
        reference = None
        if any(ATTACKS.get(name).needs_reference for name in self.config.attacks):
            reference = self.reference_signals(setting)
        results, scores = {}, {}
        for name in self.config.attacks:
            logging.info("attack %s on the %s victim", name, setting)
            context = AttackContext(seed=derived_seed(self.config.seed, name, setting),
                                    epochs=self.config.attack_epochs)
            started = time.time()
            attack = make_attack(name, context)
            try:
                attack.check_inputs(shadow, reference)
                attack.fit(shadow, reference)
            except OptionalDependencyError as err:
                logging.warning("skipping attack %s: %s", name, err)
                results[name] = {"skipped": str(err)}
                continue
            faults.point("stage.attack")
            scores[name] = attack.score(target.signals, reference)
            threshold = attack.decision_threshold
            results[name] = {
                **attack_metrics(scores[name], target.is_member, threshold),
                "ci95": bootstrap_intervals(scores[name], target.is_member, threshold,
                                            self.config.bootstrap_resamples,
                                            seed=derived_seed(self.config.seed, name, setting, "bootstrap")),
                "per_class": {str(label): metrics for label, metrics in per_class_metrics(
                    scores[name], target.is_member, target.signals.labels, threshold).items()},
                "seconds": time.time() - started}
        return results, scores, target

    @property
    def result_path(self) -> Path:
        """The results JSON, written last: its existence means this configuration is complete."""
        return self.config.base_dir / "results" / f"{self.config.result_key()}.json"

    def run(self) -> Dict:
        path = self.result_path
        if path.exists():
            logging.info("reusing %s", path)
            report = read_json(path)
            if report.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(f"{path} was written by an incompatible tfprune_mia version (format "
                                      f"{report.get('format_version')}, expected {FORMAT_VERSION}); use another "
                                      "--run_root or delete that file")
            report["result_path"] = str(path)
            return report
        return self.evaluate(path)

    def evaluate(self, path: Path) -> Dict:
        """Attack both settings and write the report, per-sample scores and figures (path = result JSON)."""
        config = self.config
        started = time.time()
        roles = self.split.roles + (self.reference_roles if config.uses_reference_models else [])
        for role in roles:
            self.original(role)
        for setting in config.settings[1:]:
            for role in roles:
                self.stage(setting)(role)
        report = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "versions": package_versions(),
                  "split_fingerprint": self.split.fingerprint(), "models": {}, "attacks": {}, "divergence": {},
                  "tf_privacy": {}}
        all_scores, targets = {}, {}
        for setting in config.settings:
            victim = self.stage(setting)("victim")
            meta = victim.meta()
            report["models"][setting] = {key: meta[key] for key in
                                         ("train_accuracy", "dev_accuracy", "test_accuracy", "best_epoch")}
            if "defense" in meta:
                report["models"][setting]["defense"] = meta["defense"]
            report["models"][setting]["sparsity"] = {k: v for k, v in meta["sparsity"].items() if k != "layers"}
            report["models"][setting]["layer_sparsity"] = {
                name: layer["sparsity"] for name, layer in meta["sparsity"]["layers"].items()}
            for key in ("footprint", "original_footprint", "pruner_info"):  # pruned stage only
                if key in meta:
                    report["models"][setting][key] = meta[key]
            results, scores, target = self.attack_setting(setting)
            report["attacks"][setting] = results
            report["divergence"][setting] = divergence_report(target)
            report["tf_privacy"][setting] = self.tf_privacy_suite(target, setting)
            targets[setting] = target
            # Per-sample risk scores: one row per target sample, joinable to the dataset through `index`.
            all_scores.update({f"{setting}/{name}": value for name, value in scores.items()})
            all_scores[f"{setting}/is_member"] = target.is_member
            all_scores[f"{setting}/labels"] = target.signals.labels
            all_scores[f"{setting}/index"] = np.concatenate([self.split.victim.train, self.split.victim.test])
        report["figures"] = self.figures(path, targets, all_scores)
        report["seconds"] = time.time() - started
        write_npz(path.with_suffix(".scores.npz"), **all_scores)
        faults.point("stage.report")
        write_json(path, report)
        report["result_path"] = str(path)
        return report


    def tf_privacy_suite(self, target: MembershipSet, setting: str) -> Dict:
        try:
            return run_tfp_suite(target, seed=derived_seed(self.config.seed, "tf_privacy", setting))
        except OptionalDependencyError as err:
            logging.info("TF Privacy comparison skipped: %s", err)
            return {"skipped": str(err)}

    def figures(self, path: Path, targets: Dict[str, MembershipSet], all_scores: Dict[str, np.ndarray]) -> Dict:
        """Figure-1 histograms and log-log ROC curves as PNG beside the result and in TensorBoard."""
        from tfprune_mia import plots

        figures = {"divergence": plots.divergence_figure(
            {setting: (t.signals, t.is_member) for setting, t in targets.items()},
            f"{self.config.dataset}/{self.config.model}: members vs non-members")}
        for setting in targets:
            curves = {key.split("/", 1)[1]: (value, all_scores[f"{setting}/is_member"])
                      for key, value in all_scores.items()
                      if key.startswith(f"{setting}/") and key.split("/", 1)[1] not in ("is_member", "labels", "index")}
            if curves:
                figures[f"roc_{setting}"] = plots.roc_figure(curves, f"{setting} victim")
        stem = path.with_suffix("")
        return plots.save_figures(figures, stem.parent / f"{stem.name}-figures",
                                  self.config.base_dir / "tensorboard" / f"attacks-{stem.name}")


def subsample(dataset: Dataset, max_samples: int, seed: int) -> Dataset:
    """A seeded random subset of `max_samples` records in dataset order (0 or >= len: the whole dataset)."""
    if not max_samples or max_samples >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(derived_seed(seed, "subsample")).permutation(len(dataset))[:max_samples])
    return dataclasses.replace(dataset, x=dataset.x[keep], y=dataset.y[keep])


def check_balanced_disjoint(split: Split) -> None:
    """Privacy-evaluation integrity: the evaluation sets are disjoint and (near-)balanced."""
    split.check_disjoint()
    members, non_members = len(split.victim.train), len(split.victim.test)
    if abs(members - non_members) > 0.05 * max(members, non_members):
        raise CheckpointError(f"victim members ({members}) and non-members ({non_members}) are unbalanced; "
                              "balanced accuracy still holds but delete the split file to re-make it")


def run_experiment(config: ExperimentConfig) -> Dict:
    return Experiment(config).run()


def rerun_attacks(config: ExperimentConfig) -> Dict:
    """Re-run the attacks (and metrics, figures) on the models train_prune cached, training nothing. A result
    that already exists for this configuration is kept: the re-run goes to a new, timestamped file beside it.
    A missing model raises CheckpointError."""
    if not (config.base_dir / "split.npz").exists():
        raise CheckpointError(f"no cached run at {config.base_dir}; run train_prune first with the same flags")
    experiment = Experiment(config, require_cached=True)
    path = config.base_dir / "results" / f"{config.result_key()}.json"
    if path.exists():
        path = path.with_name(f"{config.result_key()}.attack-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
    return experiment.evaluate(path)
