"""The canary audit of one attacked setting: the victim's signals on its canaries, scored by every attack the
attacker fits on shadows, bounded by `audit_dp` (audit/privacy.py).

The attacks are fitted again here with the seeds of the membership audit, because an attack result caches its
scores, not the fitted attack; the canary scores are cached beside the attack results, keyed by the attacked
models, the attack's configuration and the canary set.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from absl import logging

from tfprune_mia.attacks import ATTACKS, AttackContext, Signals, compute_signals, make_attack
from tfprune_mia.attacks.tfp_bridge import OptionalDependencyError
from tfprune_mia.audit.core import derived_seed
from tfprune_mia.audit.privacy import PrivacyAudit, audit_dp
from tfprune_mia.data.canaries import canary_records
from tfprune_mia.defenses.accounting import default_delta
from tfprune_mia.io import read_npz, write_npz
from tfprune_mia.pipeline.attack_cache import attack_key
from tfprune_mia.pipeline.roles import VICTIM, Setting

REFERENCE_SKIP = ("needs its reference models' signals on the canaries, which the pipeline does not compute; "
                  "the shadow-fitted attacks bound epsilon")


def canary_signals(stages, setting: Setting) -> Signals:
    """The victim's signals on all canaries (IN and OUT) in `setting`, cached beside its other signals."""
    store = stages.model(VICTIM, setting)
    path = store.directory / f"signals-canaries-{stages.canaries.fingerprint()}.npz"
    if path.exists():
        return Signals.load(path)
    signals = compute_signals(store.load(), *canary_records(stages.canaries, stages.dataset.x),
                              stages.config.signals, with_sensitivity=True)
    signals.save(path)
    return signals


def canary_scores(stages, setting: Setting) -> tuple:
    """(attack -> scores of the canaries, attack -> why it was skipped)."""
    config = stages.config
    directory = config.base_dir / "attacks"
    scores: Dict[str, np.ndarray] = {}
    skipped: Dict[str, str] = {}
    signals = shadow = None
    for name in config.attacks:
        if ATTACKS.get(name).needs_reference:
            skipped[name] = REFERENCE_SKIP
            continue
        path = directory / f"{attack_key(stages, setting, name)}-canaries-{stages.canaries.fingerprint()}.npz"
        if path.exists():
            scores[name] = read_npz(path)["scores"]
            continue
        if signals is None:
            signals = canary_signals(stages, setting)
            shadow = stages.shadow_membership(setting) if any(
                ATTACKS.get(n).needs_shadow for n in config.attacks) else None
        # The membership audit's seed for this attack (audit.core.run_attack), so both fit the same attack.
        attack = make_attack(name, AttackContext(seed=derived_seed(derived_seed(config.seed, setting.name), name),
                                                 epochs=config.attack_epochs))
        try:
            attack.fit(shadow)
        except OptionalDependencyError as err:
            logging.info("canary audit: attack %s skipped: %s", name, err)
            skipped[name] = str(err)
            continue
        scores[name] = np.asarray(attack.score(signals), np.float64)
        write_npz(path, scores=scores[name])
    return scores, skipped


def privacy_audit(stages, setting: Setting, confidence: float = 0.95) -> PrivacyAudit:
    """The canary audit of the victim in `setting`, at the DP accountant's delta where a DP defense ran (else
    min(1e-5, N^-1.1) of its training set, canaries included)."""
    canaries = stages.canaries
    facts = stages.facts(setting)
    defense = dict(facts.defense or {})
    delta = defense.get("delta") or default_delta(len(stages.split.victim.train) + int(canaries.included.sum()))
    scores, skipped = canary_scores(stages, setting)
    stages.say(f"{setting.name}: canary audit of {len(canaries)} canaries with {len(scores)} attacks")
    return audit_dp(scores, canaries.included, float(delta), canaries.kind, confidence, skipped,
                    defense if "epsilon" in defense else None)
