"""TF Privacy comparison: TF Privacy's own membership-inference suite run on our signals.

TF Privacy's MIA module is not in the tensorflow-privacy 0.9.0 wheel; it ships in `tensorflow-empirical-privacy`
(installed by the optional extra `pip install 'tfprune-mia[tfpmia]'`), which needs scikit-learn < 1.5 (it
imports `sklearn.utils.parallel_backend`, removed in 1.5, and calls the private `_binary_clf_curve`, renamed in
1.8), pandas 1.x and statsmodels 0.14.0. Without it, everything here raises `OptionalDependencyError`, which
the experiment turns into a "skipped" entry with this message instead of failing the run.

Two uses:
- `tfp_lr`, an attack in our protocol: TF Privacy's logistic-regression attacker on its own features
  ([logits, loss]), trained on the shadow data and scored on the target like every other attack;
- `run_tfp_suite`: TF Privacy's `run_attacks` on the target members/non-members (its protocol: threshold
  attacks on the target's own loss/entropy, trained attackers cross-validated on target data), whose AUC and
  attacker advantage sit beside ours in the report. Its loss-threshold AUC equals our `loss` attack's AUC.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from tfprune_mia.attacks.base import ATTACKS, Attack
from tfprune_mia.attacks.signals import LOG_FLOOR, MembershipSet, Signals
from tfprune_mia.errors import ConfigError

INSTALL_HINT = ("pip install 'tfprune-mia[tfpmia]' (tensorflow-empirical-privacy with scikit-learn<1.5), "
                "or drop the tfp_* attacks")
SUITE_ATTACKS = ("THRESHOLD_ATTACK", "THRESHOLD_ENTROPY_ATTACK", "LOGISTIC_REGRESSION")


class OptionalDependencyError(ConfigError):
    """An optional package a selected feature needs is not installed (or not in a working version)."""


def import_tfp_mia():
    """TF Privacy's MIA modules (membership_inference_attack, data_structures, models)."""
    try:
        from tensorflow_privacy.privacy.privacy_tests.membership_inference_attack import data_structures
        from tensorflow_privacy.privacy.privacy_tests.membership_inference_attack import (
            membership_inference_attack as mia)
        from tensorflow_privacy.privacy.privacy_tests.membership_inference_attack import models
    except ImportError as err:
        raise OptionalDependencyError(f"TF Privacy's MIA suite is unavailable ({err}); {INSTALL_HINT}") from None
    import sklearn.metrics._ranking as ranking

    if not hasattr(ranking, "_binary_clf_curve"):
        raise OptionalDependencyError("TF Privacy's MIA suite needs scikit-learn's _binary_clf_curve (removed in "
                                      f"scikit-learn 1.8); {INSTALL_HINT}")
    return mia, data_structures, models


def tfp_available() -> bool:
    try:
        import_tfp_mia()
    except OptionalDependencyError:
        return False
    return True


def _logits(signals: Signals) -> np.ndarray:
    # TF Privacy accepts logits or probabilities, not both; logits keep confident members distinguishable.
    if signals.logits is not None:
        return signals.logits.astype(np.float64)
    return np.log(np.maximum(signals.posteriors.astype(np.float64), LOG_FLOOR))


def attack_input(target: MembershipSet):
    _, data_structures, _ = import_tfp_mia()
    member = target.is_member.astype(bool)
    members, non_members = target.signals.subset(member), target.signals.subset(~member)
    return data_structures.AttackInputData(logits_train=_logits(members), logits_test=_logits(non_members),
                                           labels_train=members.labels, labels_test=non_members.labels)


def run_tfp_suite(target: MembershipSet, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """TF Privacy's own AUC and attacker advantage per attack type on the target members/non-members."""
    mia, data_structures, _ = import_tfp_mia()
    np.random.seed(seed % (2**32))  # its trained attackers split folds with NumPy's global RNG
    types = [getattr(data_structures.AttackType, name) for name in SUITE_ATTACKS]
    results = mia.run_attacks(attack_input(target), attack_types=types)
    return {result.attack_type.name: {"auc": float(result.get_auc()),
                                      "advantage": float(result.get_attacker_advantage())}
            for result in results.single_attack_results}


@ATTACKS.register("tfp_lr")
class TFPrivacyLogisticRegression(Attack):
    """TF Privacy's LogisticRegressionAttacker on [logits, loss], trained on the shadow data."""

    decision_threshold = 0.5

    @staticmethod
    def features(signals: Signals) -> np.ndarray:
        return np.column_stack([_logits(signals), signals.losses])

    def fit(self, shadow: MembershipSet, reference=None) -> "TFPrivacyLogisticRegression":
        _, _, models = import_tfp_mia()
        np.random.seed(self.context.seed % (2**32))
        self.attacker = models.LogisticRegressionAttacker()
        self.attacker.train_model(self.features(shadow.signals), shadow.is_member.astype(int))
        return self

    def score(self, signals: Signals, reference=None) -> np.ndarray:
        return np.asarray(self.attacker.predict(self.features(signals)), np.float64)
