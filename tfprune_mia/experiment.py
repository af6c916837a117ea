"""One configuration of the paper's flow, every stage cached in the run directory.

dataset -> split -> original victim and shadows -> pruned victim and shadows -> signals -> attacks -> metrics.
Each stage's output lives under a key derived from everything it depends on and is written atomically, with
its meta.json written last as the completion marker: a second run with another sparsity reuses the trained
originals, a killed run resumes at the first unfinished stage, and nothing finished is ever rewritten.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import logging

import tfprune_mia
from tfprune_mia.attacks import ATTACKS, AttackContext, MembershipSet, SignalConfig, Signals, compute_signals
from tfprune_mia.attacks import make_attack
from tfprune_mia.attacks.divergence import divergence_report
from tfprune_mia.attacks.metrics import attack_metrics
from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.data import DATASETS, load_dataset
from tfprune_mia.data.base import Dataset
from tfprune_mia.data.splits import Part, Split, load_or_make_split
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import atomic_path, read_json, stable_hash, write_json, write_npz
from tfprune_mia.models import MODELS, build_model
from tfprune_mia.pruning import PruneConfig, prune_and_finetune
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

    @property
    def base_dir(self) -> Path:
        return Path(self.run_root) / f"{self.dataset}-{self.model}-seed{self.seed}"

    def original_key(self) -> str:
        return "original-" + stable_hash([FORMAT_VERSION, self.dataset, self.model, self.seed,
                                          dataclasses.asdict(self.train)], 8)

    def pruned_key(self, prune: PruneConfig) -> str:
        return f"{prune.key}-" + stable_hash([self.original_key(), dataclasses.asdict(prune),
                                              dataclasses.asdict(self.finetune)], 8)

    def result_key(self) -> str:
        shadow = "" if self.shadow_prune == self.prune else f"_shadow-{self.shadow_prune.key}"
        return f"{self.prune.key}{shadow}-" + stable_hash(self.to_dict(), 8)

    def to_dict(self) -> Dict:
        config = dataclasses.asdict(self)
        config.pop("run_root")
        return config


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
            return keras.models.load_model(str(self.model_path), compile=False)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.model_path} is missing or corrupt ({type(err).__name__}); delete "
                                  f"{self.directory} and re-run to retrain it") from None

    def save(self, net: keras.Model, meta: Dict) -> None:
        with atomic_path(self.model_path) as tmp:
            net.save(str(tmp), save_format="h5")
        write_json(self.meta_path, {"format_version": FORMAT_VERSION, **meta})


class Experiment:
    def __init__(self, config: ExperimentConfig):
        self.config = config
        self._dataset: Optional[Dataset] = None
        self._split: Optional[Split] = None

    # -- data -------------------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.config.dataset, self.config.data_dir)
        return self._dataset

    @property
    def split(self) -> Split:
        if self._split is None:
            self._split = load_or_make_split(self.config.base_dir / "split.npz", len(self.dataset),
                                             self.config.seed, self.config.num_shadows)
        return self._split

    def arrays(self, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.dataset.x[index], self.dataset.y[index]

    def model_accuracies(self, net: keras.Model, part: Part) -> Dict[str, float]:
        return {f"{name}_accuracy": evaluate_accuracy(net, *self.arrays(getattr(part, name)))
                for name in ("train", "dev", "test")}

    # -- models -----------------------------------------------------------------------------------------
    def original_store(self, role: str) -> ModelStore:
        return ModelStore(self.config.base_dir / self.config.original_key() / role)

    def pruned_store(self, role: str) -> ModelStore:
        prune = self.prune_config(role)
        return ModelStore(self.config.base_dir / self.config.pruned_key(prune) / role)

    def prune_config(self, role: str) -> PruneConfig:
        return self.config.prune if role == "victim" else self.config.shadow_prune

    def original(self, role: str) -> ModelStore:
        store = self.original_store(role)
        if store.exists():
            return store
        logging.info("training original %s", role)
        part = self.split.part(role)
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

    def pruned(self, role: str) -> ModelStore:
        store = self.pruned_store(role)
        if store.exists():
            return store
        original = self.original(role).load()
        prune = self.prune_config(role)
        logging.info("pruning %s with %s", role, prune.key)
        part = self.split.part(role)
        seed = derived_seed(self.config.seed, role, prune.key)
        set_seed(seed)
        started = time.time()
        net, fit = prune_and_finetune(original, prune, self.arrays(part.train), self.arrays(part.dev),
                                      self.config.finetune, store.directory / "work", seed=seed)
        store.save(net, {"role": role, "kind": "pruned", "prune_config": dataclasses.asdict(prune),
                         "seconds": time.time() - started, "best_epoch": fit.best_epoch,
                         "epochs_run": fit.epochs_run, "history": fit.history,
                         **self.model_accuracies(net, part), "sparsity": sparsity_report(net),
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
        index = getattr(self.split.part(role), subset)
        signals = compute_signals(net, *self.arrays(index), self.config.signals)
        signals.save(path)
        return signals

    def membership(self, store: ModelStore, role: str) -> MembershipSet:
        """Members = the model's training split, non-members = its held-out test split."""
        cached = all(self.signals_path(store, subset).exists() for subset in ("train", "test"))
        net = None if cached else store.load()
        return MembershipSet.from_parts(self.signals(store, role, "train", net),
                                        self.signals(store, role, "test", net))

    # -- attacks ----------------------------------------------------------------------------------------
    def attack_setting(self, setting: str) -> Tuple[Dict, Dict[str, np.ndarray], MembershipSet]:
        """Attack the `original` or `pruned` victim with attacks trained on correspondingly made shadows."""
        stage = self.original if setting == "original" else self.pruned
        roles = self.split.roles
        shadow = MembershipSet.concat([self.membership(stage(role), role) for role in roles[1:]])
        target = self.membership(stage("victim"), "victim")
        check_balanced_disjoint(self.split)
        results, scores = {}, {}
        for name in self.config.attacks:
            logging.info("attack %s on the %s victim", name, setting)
            context = AttackContext(seed=derived_seed(self.config.seed, name, setting),
                                    epochs=self.config.attack_epochs)
            started = time.time()
            attack = make_attack(name, context).fit(shadow)
            scores[name] = attack.score(target.signals)
            results[name] = {**attack_metrics(scores[name], target.is_member, attack.decision_threshold),
                             "seconds": time.time() - started}
        return results, scores, target

    def run(self) -> Dict:
        config = self.config
        path = config.base_dir / "results" / f"{config.result_key()}.json"
        if path.exists():
            logging.info("reusing %s", path)
            return read_json(path)
        started = time.time()
        for role in self.split.roles:
            self.original(role)
        for role in self.split.roles:
            self.pruned(role)
        report = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "versions": package_versions(),
                  "split_fingerprint": self.split.fingerprint(), "models": {}, "attacks": {}, "divergence": {}}
        all_scores = {}
        for setting in ("original", "pruned"):
            victim = (self.original if setting == "original" else self.pruned)("victim")
            meta = victim.meta()
            report["models"][setting] = {key: meta[key] for key in
                                         ("train_accuracy", "dev_accuracy", "test_accuracy", "best_epoch")}
            report["models"][setting]["sparsity"] = {k: v for k, v in meta["sparsity"].items() if k != "layers"}
            report["models"][setting]["layer_sparsity"] = {
                name: layer["sparsity"] for name, layer in meta["sparsity"]["layers"].items()}
            results, scores, target = self.attack_setting(setting)
            report["attacks"][setting] = results
            report["divergence"][setting] = divergence_report(target)
            all_scores.update({f"{setting}/{name}": value for name, value in scores.items()})
            all_scores[f"{setting}/is_member"] = target.is_member
        report["seconds"] = time.time() - started
        write_npz(path.with_suffix(".scores.npz"), **all_scores)
        write_json(path, report)
        report["result_path"] = str(path)
        return report


def check_balanced_disjoint(split: Split) -> None:
    """Privacy-evaluation integrity: the evaluation sets are disjoint and (near-)balanced."""
    split.check_disjoint()
    members, non_members = len(split.victim.train), len(split.victim.test)
    if abs(members - non_members) > 0.05 * max(members, non_members):
        raise CheckpointError(f"victim members ({members}) and non-members ({non_members}) are unbalanced; "
                              "balanced accuracy still holds but delete the split file to re-make it")


def run_experiment(config: ExperimentConfig) -> Dict:
    return Experiment(config).run()
