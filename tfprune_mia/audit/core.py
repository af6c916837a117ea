"""`audit`: attack one model's membership signals with any set of attacks and get typed, comparable results.

Store-free: it takes signals (from `compute_signals` on any Keras model and arrays) and returns an `AuditResult`;
the paper's cached pipeline calls the same function for each attacked setting.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
from absl import logging

from tfprune_mia.attacks import ATTACKS, AttackContext, MembershipSet, ReferenceSignals, make_attack
from tfprune_mia.attacks.tfp_bridge import OptionalDependencyError
from tfprune_mia.audit.divergence import divergence_report
from tfprune_mia.audit.metrics import attack_metrics, bootstrap_intervals, per_class_metrics
from tfprune_mia.audit.results import AttackResult, AuditResult, ModelFacts
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import stable_hash

DEFAULT_ATTACKS = ("samia", "conf", "entropy", "mentr")


def derived_seed(*parts) -> int:
    """A seed per (seed, attack, stage...), independent of the order in which things run."""
    return int(stable_hash(list(parts), 8), 16) % (2**31)


def unique_attacks(attacks: Iterable[str]) -> tuple:
    """Registry-checked attack names in first-seen order, each once (`samia,samia` trains SAMIA once)."""
    names = tuple(dict.fromkeys(attacks))
    if not names:
        raise ConfigError("no attacks selected; pass e.g. attacks=('samia', 'conf')")
    for name in names:
        ATTACKS.get(name)
    return names


def run_attack(name: str, target: MembershipSet, shadow: Optional[MembershipSet] = None,
               reference: Optional[ReferenceSignals] = None, seed: int = 0, attack_epochs: int = 100,
               bootstrap_resamples: int = 200) -> AttackResult:
    """Fit one attack, score the target samples and compute every metric from the scores."""
    context = AttackContext(seed=derived_seed(seed, name), epochs=attack_epochs)
    started = time.time()
    attack = make_attack(name, context)
    reason = attack.unavailable_reason(target.signals)
    if reason is not None:
        logging.info("attack %s skipped: %s", name, reason)
        return AttackResult(name, skipped=reason)
    attack.check_inputs(shadow, reference)
    try:
        attack.fit(shadow, reference)
    except OptionalDependencyError as err:
        logging.debug("attack %s skipped: %s", name, err)
        return AttackResult(name, skipped=str(err))
    scores = np.asarray(attack.score(target.signals, reference), np.float64)
    threshold = attack.decision_threshold
    return AttackResult(
        name, attack_metrics(scores, target.is_member, threshold),
        {k: tuple(v) for k, v in bootstrap_intervals(scores, target.is_member, threshold, bootstrap_resamples,
                                                    seed=derived_seed(seed, name, "bootstrap")).items()},
        per_class_metrics(scores, target.is_member, target.signals.labels, threshold),
        time.time() - started, scores=scores)


def audit(target: MembershipSet, shadow: Optional[MembershipSet] = None, attacks: Sequence[str] = DEFAULT_ATTACKS,
          reference: Optional[ReferenceSignals] = None, bootstrap_resamples: int = 200, seed: int = 0,
          attack_epochs: int = 100, model: ModelFacts = ModelFacts(), on_attack=None) -> AuditResult:
    """Attack the members and non-members in `target` with each of `attacks` and measure them all alike.

    target: the audited model's signals on known members and non-members (`MembershipSet.from_parts`).
    shadow: signals of shadow models (trained like the target, on other data) on their own members and
        non-members; the attacks that learn from shadows (SAMIA, NN, threshold attacks) need it.
    reference: reference models' signals on the target samples (LiRA, RMIA).
    Returns an AuditResult: per attack, balanced accuracy, AUC, advantage, PPV, TPR at 1% / 0.1% FPR with
    bootstrap 95% intervals and per-class slices, plus the members/non-members divergence analysis.

    Example (a model trained on `x[:200]`; `x[200:400]` held out; the shadow trained likewise on other data):

    >>> from tfprune_mia import audit, compute_signals, MembershipSet
    >>> target = MembershipSet.from_parts(compute_signals(net, x[:200], y[:200]),
    ...                                   compute_signals(net, x[200:400], y[200:400]))
    >>> shadow = MembershipSet.from_parts(compute_signals(shadow_net, x[400:600], y[400:600]),
    ...                                   compute_signals(shadow_net, x[600:800], y[600:800]))
    >>> result = audit(target, shadow, attacks=("conf", "loss"), bootstrap_resamples=20, attack_epochs=2)
    >>> sorted(result.attacks)
    ['conf', 'loss']
    >>> 0.0 <= result["conf"].metrics["auc"] <= 1.0
    True
    """
    names = unique_attacks(attacks)
    if bootstrap_resamples < 0:
        raise ConfigError(f"bootstrap_resamples={bootstrap_resamples}: must be >= 0 (0 disables intervals)")
    for name in names:  # every missing input is reported before the first attack trains
        attack = make_attack(name)
        if (attack.needs_shadow or attack.needs_reference) and attack.unavailable_reason(target.signals) is None:
            attack.check_inputs(shadow, reference)
    results: Dict[str, AttackResult] = {}
    for index, name in enumerate(names):
        if on_attack is not None:
            on_attack(index, len(names), name)
        results[name] = run_attack(name, target, shadow, reference, seed, attack_epochs, bootstrap_resamples)
    return AuditResult(results, divergence_report(target), model, is_member=np.asarray(target.is_member),
                       labels=np.asarray(target.signals.labels))
