"""The cached stages of one configuration: data and split, original models, pruned (and defended) models, and
(pipeline.signal_stages) membership signals and reference-model signals.

Each stage's output lives under a key derived from everything it depends on and is written atomically, with its
meta.json written last as the completion marker: a killed run resumes at the first unfinished stage and nothing
finished is ever rewritten.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from tfprune_mia import distribute, faults
from tfprune_mia.audit.core import derived_seed
from tfprune_mia.audit.results import ModelFacts
from tfprune_mia.backend import keras, set_seed
from tfprune_mia.data import load_dataset
from tfprune_mia.data.base import Dataset
from tfprune_mia.data.canaries import CanarySet, load_or_make_canaries, training_arrays
from tfprune_mia.data.splits import Part, Split, load_or_make_split
from tfprune_mia.defenses import DEFENSES, DefenseConfig, DefenseContext, make_defense
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import stable_hash
from tfprune_mia.locking import directory_lock
from tfprune_mia.models import build_model
from tfprune_mia.models.stacked import unsupported_reason
from tfprune_mia.pipeline import roles as roles_lib
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.roles import VICTIM, Role, Setting
from tfprune_mia.pipeline.signal_stages import SignalStages, artifact_facts_of
from tfprune_mia.pipeline.store import ModelStore
from tfprune_mia.progress import Progress
from tfprune_mia.pruning import PruneConfig, prune_and_finetune_detailed
from tfprune_mia.pruning.export import footprint
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.training import evaluate_accuracy, fit_classifier
from tfprune_mia.training_batched import ModelJob, fit_classifiers


@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    """Everything one cached model depends on besides the configuration's data and training recipe."""

    role: Role
    part: Part
    prune: Optional[PruneConfig]  # None: the original (dense) model
    defense: DefenseConfig
    seed: int


class Stages(SignalStages):
    """The stages of `config`, computed on demand and cached; `require_cached` (the `attack` binary) turns any
    training into a one-line error instead."""

    def __init__(self, config: ExperimentConfig, require_cached: bool = False):
        self.config = config
        self.require_cached = require_cached
        # A non-chief multi_worker worker trains every model with the chief but writes its copy of the run to
        # a scratch directory; it reads the chief's finished models and checkpoints (self.chief_dir).
        self.chief_dir: Optional[Path] = None
        scratch = distribute.worker_scratch_root(config.distribution)
        if scratch is not None:
            self.chief_dir, self.config = config.base_dir, dataclasses.replace(config, run_root=scratch)
        self._dataset: Optional[Dataset] = None
        self._split: Optional[Split] = None
        self._canaries: Optional[CanarySet] = None
        self._stack_blocker: Optional[Tuple[str]] = None  # (reason or "",) once checked
        self._fallbacks_logged: set = set()

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
            check_balanced_disjoint(self._split, self.config.max_samples)
        return self._split

    @property
    def canaries(self) -> Optional[CanarySet]:
        """The audit's canaries (None without --canaries): records of the shadow half, so the victim's own splits
        and metrics are those of a run without them; their coin flips are saved beside split.npz."""
        if not self.config.canaries:
            return None
        if self._canaries is None:
            shadow_half = np.concatenate([self.split.shadows[0].train, self.split.shadows[0].dev,
                                          self.split.shadows[0].test])
            self._canaries = load_or_make_canaries(
                self.config.base_dir / f"{self.config.canary_key()}.npz", self.dataset.y, self.dataset.num_classes,
                self.config.canaries, self.config.canary_kind, derived_seed(self.config.seed, "canaries"),
                pool=shadow_half)
        return self._canaries

    def training_set(self, role: Role, part: Part) -> Tuple[np.ndarray, np.ndarray]:
        """What `role` trains on: its members, plus the IN canaries for the victim."""
        if role.is_victim and self.canaries is not None:
            return training_arrays(self.dataset.x, self.dataset.y, part.train, self.canaries)
        return self.arrays(part.train)

    def shadow_roles(self) -> List[Role]:
        return roles_lib.shadows(self.config.num_shadows)

    def reference_roles(self) -> List[Role]:
        return roles_lib.references(self.config.num_reference_models if self.config.uses_reference_models else 0)

    def all_roles(self) -> List[Role]:
        return [VICTIM] + self.shadow_roles() + self.reference_roles()

    def part(self, role: Role) -> Part:
        """The data of a role. Reference models take a random half of the victim's train + test pool (pair
        2k, 2k+1 take complementary halves, so each target sample is IN for half of them), early-stopped on the
        victim's dev split, which is therefore a non-member of every model (RMIA's population)."""
        if role.kind != "reference":
            return self.split.part(role.name)
        victim = self.split.victim
        pool = np.concatenate([victim.train, victim.test])
        order = np.random.default_rng(derived_seed(self.config.seed, "reference", role.index // 2)
                                      ).permutation(len(pool))
        halves = np.sort(pool[order[:len(pool) // 2]]), np.sort(pool[order[len(pool) // 2:]])
        return Part(halves[role.index % 2], victim.dev, halves[1 - role.index % 2])

    def arrays(self, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.dataset.x[index], self.dataset.y[index]

    def spec(self, role: Role, setting: Setting, sparsity: Optional[float] = None) -> ModelRecipe:
        """The victim is pruned as configured and defended; the attacker's models (shadows, references) are
        pruned with the shadow configuration and defended only in the adaptive setting. `sparsity`: one of the
        other released sparsities instead of the configured one (the same pipeline otherwise)."""
        if not setting.pruned:
            # DP end to end: the victim's original is trained under the defense too.
            defense = self.config.defense
            trained_defended = role.is_victim and DEFENSES.get(defense.name).trains_original(defense)
            return ModelRecipe(role, self.part(role), None, defense if trained_defended else DefenseConfig(),
                             derived_seed(self.config.seed, role.name, "original"))
        prune = self.config.prune if role.is_victim else self.config.shadow_prune
        if sparsity is not None:
            prune = dataclasses.replace(prune, sparsity=sparsity)
        defended = role.is_victim or setting.adaptive
        # The same seed with and without the defense: defended and undefended models are paired comparisons.
        return ModelRecipe(role, self.part(role), prune, self.config.defense if defended else DefenseConfig(),
                         derived_seed(self.config.seed, role.name, prune.key))

    # -- models -----------------------------------------------------------------------------------------
    def store(self, spec: ModelRecipe) -> ModelStore:
        stacked = self.stacked_original(spec.role)  # a pruned model inherits its original's key
        if spec.prune is None:
            key = self.config.original_key(stacked)
            if spec.defense.enabled:
                key = f"{key}-{spec.defense.key}-{stable_hash(spec.defense.relevant(), 8)}"
        else:
            key = self.config.pruned_key(spec.prune, spec.defense, stacked)
        # Only the victim trains on canaries: the attacker's models keep their cached directories.
        canaries = f"-{self.config.canary_key()}" if spec.role.is_victim and self.config.canaries else ""
        relative = Path(key) / f"{spec.role.name}{canaries}"
        store = ModelStore(self.config.base_dir / relative)
        if self.chief_dir is not None:
            take_from_chief(ModelStore(self.chief_dir / relative), store)
        return store

    def model(self, role: Role, setting: Setting, sparsity: Optional[float] = None) -> ModelStore:
        """The finished model of `role` in `setting`, trained (or pruned and fine-tuned) first if not cached."""
        spec = self.spec(role, setting, sparsity)
        store = self.store(spec)
        if store.exists():
            return store
        if self.require_cached:
            raise CheckpointError(f"no cached {role} model at {store.directory}; run train_prune first with the "
                                  "same flags (it trains and caches every model the attacks need)")
        if spec.prune is None and self.stacked_original(role):
            # The other attacker's originals are needed too: one stack trains every missing one.
            self._train_stacked([r for r in self.all_roles() if self.stacked_original(r)])
            return store
        with directory_lock(store.directory):  # a concurrent run training the same model: wait, then reuse it
            if not store.exists():
                with distribute.scope(self.config.distribution):
                    if spec.prune is None:
                        self._train_original(spec, store)
                    else:
                        self._prune(spec, store)
        return store

    def _accuracies(self, net: keras.Model, part: Part) -> Dict[str, float]:
        return {f"{name}_accuracy": evaluate_accuracy(net, *self.arrays(getattr(part, name)))
                for name in ("train", "dev", "test")}

    def _train_original(self, spec: ModelRecipe, store: ModelStore) -> None:
        faults.point("stage.original")
        self.say(f"training original {spec.role}")
        set_seed(spec.seed)
        net = build_model(self.config.model, self.dataset.input_shape, self.dataset.num_classes)
        started = time.time()
        train = self.training_set(spec.role, spec.part)
        defender = make_defense(spec.defense)
        context = DefenseContext(train, self.arrays(spec.part.dev), self.dataset.num_classes, self.config.train,
                                 spec.seed)
        fit = fit_classifier(net, train, self.arrays(spec.part.dev), self.config.train, store.directory / "work",
                             seed=spec.seed, loss_terms=defender.hooks(context) if spec.defense.enabled else ())
        defense = {"defense": {"key": spec.defense.key, "config": spec.defense.relevant(),
                               **defender.summary(context, fit)}} if spec.defense.enabled else {}
        self._save_original(store, spec, net, fit, time.time() - started, **defense,
                            execution=distribute.execution_record(self.config.distribution,
                                                                  self.config.train.batch_size))

    def _save_original(self, store: ModelStore, spec: ModelRecipe, net: keras.Model, fit, seconds: float,
                       **extra) -> None:
        """Store a trained original with the meta every original carries (one by one or stacked), plus `extra`."""
        store.save(net, {**extra, "role": spec.role.name, "kind": "original", "seconds": seconds,
                         "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "history": fit.history,
                         **self._accuracies(net, spec.part), "sparsity": sparsity_report(net),
                         "train_config": dataclasses.asdict(self.config.train)})

    # -- stacked training of the attacker's originals ------------------------------------------------------
    def stacked_original(self, role: Role) -> bool:
        """Whether `role`'s original is (to be) trained in one stacked model with the attacker's other originals
        (--stacked_training=auto): shadows and reference models of a supported architecture whose recipe is
        the plain training loop. The victim is always trained alone: its numbers are the paper's recipe."""
        if self.config.stacked_training == "off" or role.is_victim:
            return False
        defense = self.spec(role, roles_lib.SETTINGS["original"]).defense
        if defense.enabled:  # a defense that changes the training loop (DP-SGD, adversarial regularisation)
            self._log_fallback(f"{role}'s original is trained with defense {defense.key}")
            return False
        if self.config.distribution != "none":  # the stack is one model on one device; replicas would split it
            self._log_fallback(f"every model trains under --distribution={self.config.distribution}")
            return False
        if self._stack_blocker is None:
            reason = unsupported_reason(self.config.model, self.dataset.input_shape, self.dataset.num_classes)
            self._stack_blocker = (reason or "",)
            if reason:
                self._log_fallback(reason)
        return not self._stack_blocker[0]

    def _log_fallback(self, reason: str) -> None:
        if reason in self._fallbacks_logged:
            return
        self._fallbacks_logged.add(reason)
        logging.info("stacked training off for this run: %s; the attacker's models are trained one by one", reason)

    def _train_stacked(self, roles: Sequence[Role]) -> None:
        """Train the originals of `roles` not cached yet as one stacked model (training_batched) and store each
        as an ordinary model. Every member's lock is held (in path order, so concurrent runs cannot deadlock);
        the stack checkpoints under a directory named by the members, so a killed run resumes it."""
        specs = [self.spec(role, roles_lib.SETTINGS["original"]) for role in roles]
        stores = [self.store(spec) for spec in specs]
        order = sorted(range(len(specs)), key=lambda i: str(stores[i].directory))
        with contextlib.ExitStack() as locks:
            for i in order:  # a concurrent run training some of them: wait, then reuse what it finished
                if not stores[i].exists():
                    locks.enter_context(directory_lock(stores[i].directory))
            todo = [i for i in range(len(specs)) if not stores[i].exists()]
            if not todo:
                return
            faults.point("stage.original")
            names = [specs[i].role.name for i in todo]
            logging.info("stacked training: %d attacker models at once (%s)", len(todo), ", ".join(names))
            started = time.time()
            jobs = [ModelJob(self.training_set(specs[i].role, specs[i].part), self.arrays(specs[i].part.dev),
                             specs[i].seed) for i in todo]
            work = (self.config.base_dir / self.config.original_key(stacked=True) / "stacked-work"
                    / stable_hash([names, [specs[i].seed for i in todo]], 8))
            trained = fit_classifiers(self.config.model, self.dataset.input_shape, self.dataset.num_classes, jobs,
                                      self.config.train, work)
            seconds = (time.time() - started) / len(todo)
            for i, (net, fit) in zip(todo, trained):
                self._save_original(stores[i], specs[i], net, fit, seconds,
                                    stacked_training={"models": len(todo), "members": names})

    def _prune(self, spec: ModelRecipe, store: ModelStore) -> None:
        original = self.model(spec.role, roles_lib.SETTINGS["original"]).load()
        faults.point("stage.pruned")
        self.say(f"pruning {spec.role} with {spec.prune.key}, defense {spec.defense.key}")
        set_seed(spec.seed)
        started = time.time()
        defender = make_defense(spec.defense)
        part = spec.part
        train = self.training_set(spec.role, part)
        # End to end, the original's DP training spent privacy on the same records: the accountant composes it.
        original_meta = self.model(spec.role, roles_lib.SETTINGS["original"]).meta()
        prior = tuple(original_meta.get("defense", {}).get("stages", ())) if defender.trains_original(
            spec.defense) else ()
        context = DefenseContext(train, self.arrays(part.dev), self.dataset.num_classes,
                                 self.config.finetune, spec.seed, member_index=part.train,
                                 reference_index=part.dev, evaluation_index=part.test, prior_stages=prior)
        pruned = prune_and_finetune_detailed(original, spec.prune, train, self.arrays(part.dev),
                                             self.config.finetune, store.directory / "work", seed=spec.seed,
                                             loss_terms=defender.hooks(context))
        net, fit = pruned.model, pruned.fit
        defense_record = {"key": spec.defense.key, "config": spec.defense.relevant(),
                          **defender.summary(context, fit)}
        if "epsilon" in defense_record:
            logging.debug("%s: DP epsilon = %.3f (RDP), %.3f (PLD) at delta = %.3g, scope %s", spec.role,
                          defense_record["epsilon"], defense_record["epsilon_pld"], defense_record["delta"],
                          defense_record["scope"])
        # Pruning works in place on `original`: reload it as the reference for removed weights and footprint.
        reference = self.model(spec.role, roles_lib.SETTINGS["original"]).load()
        store.save(net, {"role": spec.role.name, "kind": "pruned", "prune_config": dataclasses.asdict(spec.prune),
                         "seconds": time.time() - started, "best_epoch": fit.best_epoch,
                         "epochs_run": fit.epochs_run, "history": fit.history,
                         **self._accuracies(net, part), "sparsity": sparsity_report(net, reference),
                         "footprint": footprint(net), "original_footprint": footprint(reference),
                         "pruner_info": pruned.info, "defense": defense_record,
                         "finetune_config": dataclasses.asdict(self.config.finetune),
                         "execution": distribute.execution_record(self.config.distribution,
                                                                  self.config.finetune.batch_size)})

    def facts(self, setting: Setting) -> ModelFacts:
        """The attacked victim's accuracies, sparsity, footprint and defense record in `setting`."""
        store = self.model(VICTIM, setting)
        meta = store.meta()
        sparsity = meta["sparsity"]
        accuracies = (meta["train_accuracy"], meta["dev_accuracy"], meta["test_accuracy"])
        footprint = meta.get("footprint")
        if self.config.attack_artifact != "keras":
            # The deployed file's accuracy on the members / non-members (the Keras model's kept beside it).
            target = self.membership(VICTIM, setting)
            member = target.is_member.astype(bool)
            correct = target.signals.correct
            accuracies = (float(correct[member].mean()), None, float(correct[~member].mean()))
            footprint = {**(footprint or {}), **artifact_facts_of(store, self.config.attack_artifact),
                         "keras_train_accuracy": meta["train_accuracy"], "keras_test_accuracy": meta["test_accuracy"]}
        return ModelFacts(*accuracies, meta["best_epoch"],
                          {k: v for k, v in sparsity.items() if k != "layers"},
                          {name: layer["sparsity"] for name, layer in sparsity["layers"].items()},
                          footprint, meta.get("original_footprint"), meta.get("pruner_info"),
                          meta.get("defense"))

    def say(self, message: str) -> None:
        # The progress line already shows the stage; the log keeps it for --verbosity=1 and log files.
        logging.debug("%s", message)

    def build_models(self, settings: Sequence[Setting]) -> None:
        """Train every model the settings attack, originals first (they are shared), then the other released
        sparsities, with progress and ETA."""
        plan = [(role, setting, None) for setting in [roles_lib.SETTINGS["original"]] + [s for s in settings if s.pruned]
                for role in self.all_roles()]
        plan += [(role, setting, sparsity) for setting in settings if setting.pruned
                 for _, sparsity in self.released_versions(setting)[1:] for role in self.all_roles()]
        todo = [(role, setting, sparsity) for role, setting, sparsity in plan
                if not self.store(self.spec(role, setting, sparsity)).exists()]
        with Progress(len(todo), "models") as progress:
            for role, setting, sparsity in todo:
                progress.start(f"{'pruning' if setting.pruned else 'training'} {role}"
                               + (" (stacked)" if not setting.pruned and self.stacked_original(role) else "")
                               + (f" @ {sparsity:g}" if sparsity is not None else "")
                               + (f" ({setting.name.replace('_', ' ')})" if setting.adaptive else ""))
                self.model(role, setting, sparsity)
                progress.step()


def take_from_chief(chief: ModelStore, store: ModelStore) -> None:
    """A multi_worker worker's copy of what the chief has of a model: the finished model, else its training
    checkpoints, so every worker trains the models the chief trains and resumes at the chief's epoch (one that
    trained a model or epochs the chief skips would wait for it forever). The chief gets ahead of the workers
    only in steps without collectives, so what is copied is never half-written by a training step."""
    if store.exists():
        return
    if chief.exists():
        store.directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chief.model_path, store.model_path)
        shutil.copyfile(chief.meta_path, store.meta_path)  # last: the completion marker
    elif (chief.directory / "work").exists() and not (store.directory / "work").exists():
        shutil.copytree(chief.directory / "work", store.directory / "work")


def subsample(dataset: Dataset, max_samples: int, seed: int) -> Dataset:
    """A seeded random subset of `max_samples` records in dataset order (0 or >= len: the whole dataset)."""
    if not max_samples or max_samples >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(derived_seed(seed, "subsample")).permutation(len(dataset))[:max_samples])
    return dataclasses.replace(dataset, x=dataset.x[keep], y=dataset.y[keep])


def check_balanced_disjoint(split: Split, max_samples: int = 0) -> None:
    """Privacy-evaluation integrity: the evaluation sets are disjoint and (near-)balanced."""
    split.check_disjoint()
    members, non_members = len(split.victim.train), len(split.victim.test)
    if abs(members - non_members) > 0.05 * max(members, non_members):
        hint = (f"use a larger subset (--max_samples well above {max_samples}) so the split can balance them"
                if max_samples else "delete the split file to re-make it")
        raise CheckpointError(f"victim members ({members}) and non-members ({non_members}) are unbalanced; {hint}")
