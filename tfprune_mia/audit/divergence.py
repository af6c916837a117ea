"""Prediction divergence (Yuan & Zhang 2022, Figure 1): confidence, sensitivity and generalisation gaps, per class."""
from __future__ import annotations

from typing import Dict

import numpy as np

from tfprune_mia.attacks.signals import MembershipSet


def gaps(signals, is_member: np.ndarray) -> Dict[str, float]:
    member = is_member.astype(bool)
    confidence, sensitivity, correct = (signals.true_class_confidence, signals.true_class_sensitivity,
                                        signals.correct)
    return {
        "member_confidence": float(confidence[member].mean()),
        "non_member_confidence": float(confidence[~member].mean()),
        "confidence_gap": float(confidence[member].mean() - confidence[~member].mean()),
        "member_sensitivity": float(sensitivity[member].mean()),
        "non_member_sensitivity": float(sensitivity[~member].mean()),
        "sensitivity_gap": float(sensitivity[~member].mean() - sensitivity[member].mean()),
        "generalisation_gap": float(correct[member].mean() - correct[~member].mean()),
    }


def divergence_report(target: MembershipSet) -> Dict:
    """Overall gaps and the same gaps within each ground-truth class."""
    report = gaps(target.signals, target.is_member)
    per_class = {}
    for label in np.unique(target.signals.labels):
        in_class = target.signals.labels == label
        if len(np.unique(target.is_member[in_class])) == 2:
            per_class[int(label)] = gaps(target.signals.subset(in_class), target.is_member[in_class])
    report["per_class"] = per_class
    return report
