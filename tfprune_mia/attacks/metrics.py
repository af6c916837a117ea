"""Attack metrics, computed from per-sample scores identically for every attack (scikit-learn ROC)."""
from __future__ import annotations

from typing import Dict

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

LOW_FPRS = (0.01, 0.001)


def balanced_accuracy(predicted_member: np.ndarray, is_member: np.ndarray) -> float:
    """Mean of TPR and TNR: 0.5 for guessing whatever the member/non-member ratio."""
    is_member = is_member.astype(bool)
    tpr = np.mean(predicted_member[is_member]) if is_member.any() else 0.0
    tnr = np.mean(~predicted_member[~is_member]) if (~is_member).any() else 0.0
    return float(0.5 * (tpr + tnr))


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, max_fpr: float) -> float:
    """Highest TPR among the ROC points with FPR <= max_fpr (the threshold set on non-members)."""
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return float(np.max(tpr[fpr <= max_fpr]))


def attack_metrics(scores: np.ndarray, is_member: np.ndarray, decision_threshold: float) -> Dict[str, float]:
    scores = np.asarray(scores, np.float64)
    is_member = np.asarray(is_member).astype(int)
    if len(np.unique(is_member)) < 2:
        raise ValueError("attack evaluation needs both members and non-members")
    predicted = scores >= decision_threshold
    fpr, tpr, _ = roc_curve(is_member, scores)
    result = {
        "balanced_accuracy": balanced_accuracy(predicted, is_member),
        "auc": float(roc_auc_score(is_member, scores)),
        "advantage": float(np.max(tpr - fpr)),
    }
    for max_fpr in LOW_FPRS:
        result[f"tpr_at_{max_fpr:g}_fpr"] = tpr_at_fpr(scores, is_member, max_fpr)
    return result
