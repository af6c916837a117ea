"""Metrics are exact on hand-checkable scores, match scikit-learn, and the bootstrap agrees with them."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tfprune_mia.audit.metrics import (attack_metrics, batched_metrics, bootstrap_intervals, per_class_metrics,
                                         tpr_at_fpr)
from tfprune_mia.errors import ConfigError


def test_perfect_separation_gives_perfect_metrics():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    member = np.array([1, 1, 1, 0, 0, 0])
    m = attack_metrics(scores, member, decision_threshold=0.5)
    assert m == {"balanced_accuracy": 1.0, "auc": 1.0, "advantage": 1.0, "ppv": 1.0,
                 "tpr_at_0.01_fpr": 1.0, "tpr_at_0.001_fpr": 1.0}


def test_known_partial_separation():
    # members 4,3,1 / non-members 2,0,0.5 (scores); threshold 2.5 -> TP 2/3, FP 0/3
    scores = np.array([4.0, 3.0, 1.0, 2.0, 0.0, 0.5])
    member = np.array([1, 1, 1, 0, 0, 0])
    m = attack_metrics(scores, member, decision_threshold=2.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5 * (2 / 3 + 1))
    assert m["ppv"] == 1.0
    # pairs (member > non-member): 4 and 3 beat all 3, 1 beats 0 and 0.5 -> 8/9
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["advantage"] == pytest.approx(2 / 3)
    assert m["tpr_at_0.01_fpr"] == pytest.approx(2 / 3)


def test_ppv_is_zero_without_member_predictions_and_errors_are_clear():
    assert attack_metrics(np.array([0.1, 0.2]), np.array([1, 0]), 1.0)["ppv"] == 0.0
    with pytest.raises(ConfigError, match="both members and non-members"):
        attack_metrics(np.array([0.1, 0.2]), np.array([1, 1]), 0.5)
    with pytest.raises(ConfigError, match="non-finite"):
        attack_metrics(np.array([np.nan, 0.2]), np.array([1, 0]), 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_metrics_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    member = rng.random(n) < 0.4
    scores = np.round(rng.normal(member * 0.7, 1.0), 1)  # rounding creates many ties
    batch = batched_metrics(scores[None], member[None], 0.2)
    point = attack_metrics(scores, member, 0.2)
    assert batch["auc"][0] == pytest.approx(roc_auc_score(member, scores), abs=1e-12)
    for name, value in point.items():
        assert batch[name][0] == pytest.approx(value, abs=1e-12), name
    fpr, tpr, _ = roc_curve(member, scores)
    assert point["advantage"] == pytest.approx(np.max(tpr - fpr))


def test_tpr_at_fpr_is_zero_when_no_threshold_reaches_it():
    scores = np.array([1.0, 0.0, 2.0])  # the highest score is a non-member
    assert tpr_at_fpr(scores, np.array([1, 1, 0]), 0.01) == 0.0


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = rng.normal(member * 1.0, 1.0)
    a = bootstrap_intervals(scores, member, 0.5, num_resamples=300, seed=3)
    b = bootstrap_intervals(scores, member, 0.5, num_resamples=300, seed=3, chunk=7)
    assert a == b  # chunking does not change the draws' results
    point = attack_metrics(scores, member, 0.5)
    for name, (low, high) in a.items():
        assert low <= point[name] <= high, name
    # AUC of N(1,1) vs N(0,1) is Phi(1/sqrt2) = 0.760; the interval width ~ +-0.03 at n=1000
    assert a["auc"][0] > 0.71 and a["auc"][1] < 0.81 and a["auc"][1] - a["auc"][0] < 0.08
    assert bootstrap_intervals(scores, member, 0.5, num_resamples=0) == {}


def test_per_class_slices():
    scores = np.array([1.0, 0.0, 1.0, 0.0, 0.2, 0.9, 0.5])
    member = np.array([1, 0, 1, 0, 1, 0, 1])
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    sliced = per_class_metrics(scores, member, labels, 0.5)
    assert set(sliced) == {0, 1}  # class 2 has no non-member
    assert sliced[0]["auc"] == 1.0 and sliced[0]["count"] == 4
    assert sliced[1]["auc"] == 0.0
