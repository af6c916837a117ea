"""Threshold attacks on posterior-derived scores (Song & Mittal 2021; Yeom et al. 2018; Yuan & Zhang 2022).

Class-wise attacks learn one threshold per class on the shadow data; a target sample's membership score is
its raw score minus its class threshold, so the decision is `score >= 0` and the ROC sweeps all thresholds
shifted together.
"""
from __future__ import annotations

import numpy as np

from tfprune_mia.attacks.base import ATTACKS, Attack
from tfprune_mia.attacks.signals import LOG_FLOOR, MembershipSet, Signals


def confidence(signals: Signals) -> np.ndarray:
    return signals.true_class_confidence


def negative_entropy(signals: Signals) -> np.ndarray:
    p = signals.posteriors
    return np.sum(p * np.log(np.maximum(p, LOG_FLOOR)), axis=1)


def negative_modified_entropy(signals: Signals) -> np.ndarray:
    """-Mentr(p, y) with Mentr = -(1 - p_y) log p_y - sum_{k != y} p_k log(1 - p_k)."""
    p = signals.posteriors
    rows = np.arange(len(signals))
    p_y = p[rows, signals.labels]
    log_not_p = np.log(np.maximum(1.0 - p, LOG_FLOOR))
    others = np.sum(p * log_not_p, axis=1) - p_y * log_not_p[rows, signals.labels]
    mentr = -(1.0 - p_y) * np.log(np.maximum(p_y, LOG_FLOOR)) - others
    return -mentr


def best_threshold(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """The threshold maximising 0.5 * (P[member >= t] + P[non-member < t]) over observed scores.

    O(n log n) by sorting. Candidates are visited in the order (members, non-members) and the first maximiser
    wins, exactly as the paper's O(n^2) search; the objective is compared in integer counts so ties are exact.
    """
    if len(member_scores) == 0 or len(non_member_scores) == 0:
        return 0.0
    candidates = np.concatenate([member_scores, non_member_scores])
    sorted_in, sorted_out = np.sort(member_scores), np.sort(non_member_scores)
    members_at_or_above = len(sorted_in) - np.searchsorted(sorted_in, candidates, side="left")
    non_members_below = np.searchsorted(sorted_out, candidates, side="left")
    objective = members_at_or_above * len(sorted_out) + non_members_below * len(sorted_in)
    return float(candidates[int(np.argmax(objective))])


class ThresholdAttack(Attack):
    """One threshold per class (class_wise=True) or one for all samples, on a score where higher = member."""

    class_wise = True

    @staticmethod
    def raw_score(signals: Signals) -> np.ndarray:
        raise NotImplementedError

    def fit(self, shadow: MembershipSet, reference=None) -> "ThresholdAttack":
        values = self.raw_score(shadow.signals)
        member = shadow.is_member.astype(bool)
        self.global_threshold = best_threshold(values[member], values[~member])
        self.thresholds = {}
        if self.class_wise:
            for label in np.unique(shadow.signals.labels):
                in_class = shadow.signals.labels == label
                self.thresholds[int(label)] = best_threshold(values[in_class & member], values[in_class & ~member])
        return self

    def thresholds_for(self, labels: np.ndarray) -> np.ndarray:
        # A class absent from the shadow data falls back to the global threshold.
        return np.array([self.thresholds.get(int(label), self.global_threshold) for label in labels])

    def score(self, signals: Signals, reference=None) -> np.ndarray:
        return self.raw_score(signals) - self.thresholds_for(signals.labels)


@ATTACKS.register("conf")
class ConfidenceAttack(ThresholdAttack):
    """Class-wise threshold on the true-class confidence p_y."""
    raw_score = staticmethod(confidence)


@ATTACKS.register("entropy")
class EntropyAttack(ThresholdAttack):
    """Class-wise threshold on -H(p) (the paper's code prints it as "Xent")."""
    raw_score = staticmethod(negative_entropy)


@ATTACKS.register("mentr")
class ModifiedEntropyAttack(ThresholdAttack):
    """Class-wise threshold on -Mentr(p, y) (Song & Mittal)."""
    raw_score = staticmethod(negative_modified_entropy)


class GlobalThresholdAttack(ThresholdAttack):
    class_wise = False


@ATTACKS.register("conf_global")
class GlobalConfidenceAttack(GlobalThresholdAttack):
    """One threshold on p_y for all classes (the paper's code prints it as "Top1-conf")."""
    raw_score = staticmethod(confidence)


@ATTACKS.register("max_prob")
class MaxProbabilityAttack(GlobalThresholdAttack):
    """One threshold on the top-1 probability max_k p_k (label-free)."""

    @staticmethod
    def raw_score(signals: Signals) -> np.ndarray:
        return signals.posteriors.max(axis=1)


@ATTACKS.register("loss")
class LossAttack(GlobalThresholdAttack):
    """Yeom et al.'s loss attack: one threshold on -CE(p, y); ranks samples exactly as conf_global."""

    @staticmethod
    def raw_score(signals: Signals) -> np.ndarray:
        return -signals.losses


@ATTACKS.register("correctness")
class CorrectnessAttack(GlobalThresholdAttack):
    """Yeom et al.'s gap attack: member iff correctly classified (its accuracy is 1/2 + generalisation gap/2)."""

    @staticmethod
    def raw_score(signals: Signals) -> np.ndarray:
        return signals.correct.astype(np.float64)
