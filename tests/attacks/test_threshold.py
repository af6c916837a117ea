"""Threshold attacks: the sort-based threshold search equals the paper's O(n^2) search, names mean what
they say, and class-wise thresholds apply per class."""
import numpy as np
import pytest

from tfprune_mia.attacks import MembershipSet, Signals, make_attack
from tfprune_mia.attacks.threshold import best_threshold, negative_entropy, negative_modified_entropy


def brute_force(v_in, v_out):
    best, thr = 0, 0
    for t in np.concatenate([v_in, v_out]):
        acc = 0.5 * (np.mean(v_in >= t) + np.mean(v_out < t))
        if acc > best:
            best, thr = acc, t
    return thr


@pytest.mark.parametrize("seed", range(30))
def test_sorted_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    v_in = rng.integers(0, 6, rng.integers(1, 12)).astype(float)  # small integer range: many ties
    v_out = rng.integers(0, 6, rng.integers(1, 12)).astype(float)
    assert best_threshold(v_in, v_out) == brute_force(v_in, v_out)


def signals_of(posteriors, labels):
    posteriors = np.asarray(posteriors, np.float32)
    return Signals(posteriors, np.zeros_like(posteriors), np.asarray(labels))


def test_scores_are_the_named_quantities():
    s = signals_of([[0.7, 0.2, 0.1]], [1])
    p = np.array([0.7, 0.2, 0.1])
    assert negative_entropy(s)[0] == pytest.approx(np.sum(p * np.log(p)), rel=1e-6)
    mentr = -(1 - 0.2) * np.log(0.2) - (0.7 * np.log(0.3) + 0.1 * np.log(0.9))
    assert negative_modified_entropy(s)[0] == pytest.approx(-mentr, rel=1e-6)


def test_class_wise_thresholds_apply_per_class():
    # class 0 members have p_y >= 0.8, class 1 members p_y >= 0.4: one global threshold cannot separate both
    members = signals_of([[0.9, 0.1], [0.85, 0.15], [0.55, 0.45], [0.5, 0.5]], [0, 0, 1, 1])
    non = signals_of([[0.6, 0.4], [0.65, 0.35], [0.8, 0.2], [0.75, 0.25]], [0, 0, 1, 1])
    shadow = MembershipSet.from_parts(members, non)
    conf = make_attack("conf").fit(shadow)
    assert np.array_equal(conf.predict(shadow.signals), shadow.is_member.astype(bool))
    glob = make_attack("conf_global").fit(shadow)
    assert not np.array_equal(glob.predict(shadow.signals), shadow.is_member.astype(bool))
    # max_prob is label-free: it ignores the label and thresholds max_k p_k
    assert np.allclose(make_attack("max_prob").fit(shadow).score(members) + 0,
                       make_attack("max_prob").fit(shadow).score(signals_of(members.posteriors, [1, 1, 0, 0])))
