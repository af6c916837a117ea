"""LiRA and RMIA on synthetic reference statistics with a known answer."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from tfprune_mia.attacks import ReferenceSignals, Signals, make_attack
from tfprune_mia.attacks.reference import lira_scores, pooled_std, rmia_scores
from tfprune_mia.errors import ConfigError


def test_offline_lira_is_a_z_score_against_the_out_models():
    ref = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])  # 3 OUT models x 2 samples
    is_in = np.zeros_like(ref, bool)
    # per-sample medians 2 and 3; residuals (-2,0,2) each: pooled std sqrt(16/4) = 2
    assert pooled_std(ref, ~is_in, np.array([2.0, 3.0])) == pytest.approx(2.0)
    assert lira_scores(np.array([6.0, 3.0]), ref, is_in, online=False) == pytest.approx([2.0, 0.0])


def test_online_lira_is_the_gaussian_log_likelihood_ratio():
    ref = np.array([[5.0], [7.0], [0.0], [2.0]])
    is_in = np.array([[True], [True], [False], [False]])
    score = lira_scores(np.array([6.0]), ref, is_in, online=True)
    sigma = np.sqrt(2.0)  # residuals +-1 in both groups, 2 dof pooled over 2 values each
    expected = norm.logpdf(6.0, 6.0, sigma) - norm.logpdf(6.0, 1.0, sigma)
    assert score[0] == pytest.approx(expected)
    with pytest.raises(ConfigError, match="IN reference model"):
        lira_scores(np.array([6.0]), ref, np.zeros_like(is_in), online=True)


def synthetic_population(rng, n, num_models, gap):
    """Per-sample difficulty d_i; a model's logit-confidence on i is d_i + noise, + gap if i was IN."""
    difficulty = rng.normal(0, 2, n)
    target_member = rng.random(n) < 0.5
    half = rng.random((num_models // 2, n)) < 0.5
    is_in = np.concatenate([half, ~half])  # complementary pairs, as the experiment builds them
    reference = difficulty + rng.normal(0, 0.5, (num_models, n)) + gap * is_in
    target = difficulty + rng.normal(0, 0.5, n) + gap * target_member
    return target, reference, is_in, target_member


def test_lira_exploits_per_sample_difficulty():
    rng = np.random.default_rng(0)
    target, reference, is_in, member = synthetic_population(rng, 2000, 8, gap=1.0)
    online = roc_auc_score(member, lira_scores(target, reference, is_in, online=True))
    offline = roc_auc_score(member, lira_scores(target, reference, is_in, online=False))
    global_threshold = roc_auc_score(member, target)  # ignores difficulty
    assert online > 0.85 and offline > 0.8 and global_threshold < 0.7
    null = roc_auc_score(member, lira_scores(*synthetic_population(rng, 2000, 8, gap=0.0)[:3], online=True))
    assert abs(null - 0.5) < 0.05


def to_signals(stat, labels):
    """2-class logits whose logit_confidence on the label equals stat."""
    logits = np.zeros((len(stat), 2))
    logits[np.arange(len(stat)), labels] = stat
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Signals(p.astype(np.float32), np.zeros_like(p, np.float32), labels, logits)


@pytest.mark.parametrize("name", ["lira_offline", "lira_online", "rmia_offline", "rmia_online"])
def test_registered_attacks_on_synthetic_reference_signals(name):
    rng = np.random.default_rng(1)
    n, z = 1500, 400
    target, reference, is_in, member = synthetic_population(rng, n + z, 6, gap=1.5)
    is_in[:, n:] = False  # population samples: OUT of every model and non-members of the target
    target[n:] -= 1.5 * member[n:]
    labels = rng.integers(0, 2, n + z)
    sig = lambda stat: to_signals(stat, labels)  # noqa: E731
    signals = sig(target)
    models = [sig(r) for r in reference]
    ref = ReferenceSignals(tuple(m.subset(slice(0, n)) for m in models), is_in[:, :n],
                           signals.subset(slice(n, None)), tuple(m.subset(slice(n, None)) for m in models))
    attack = make_attack(name)
    assert attack.needs_reference
    scores = attack.run(None, signals.subset(slice(0, n)), ref)
    assert roc_auc_score(member[:n], scores) > 0.8
    with pytest.raises(ConfigError, match="reference"):
        attack.run(None, signals.subset(slice(0, n)), None)


def test_rmia_counts_population_samples_it_beats():
    # one reference model, online=False, a=1 -> Pr(x) = mean_OUT; ratios x: 2, 0.5; z: 1, 1.5, 3
    scores = rmia_scores(np.array([0.4, 0.1]), np.array([[0.2, 0.2]]), np.zeros((1, 2), bool),
                         np.array([0.2, 0.3, 0.6]), np.array([[0.2, 0.2, 0.2]]), online=False, a=1.0)
    assert scores == pytest.approx([2 / 3, 0.0])


def test_online_lira_with_one_in_model_per_sample_is_not_worse_than_offline():
    # 2 reference models (one IN per sample) and 3 OUT shadows: the setting where the unshrunk online test is
    # starved; shrinking the IN shift towards the mean keeps it at least as good as offline.
    rng = np.random.default_rng(3)
    n = 3000
    difficulty = rng.normal(0, 2, n)
    member = rng.random(n) < 0.5
    half = rng.random(n) < 0.5
    is_in = np.stack([np.zeros(n, bool)] * 3 + [half, ~half])
    reference = difficulty + rng.normal(0, 0.7, is_in.shape) + 1.0 * is_in
    target = difficulty + rng.normal(0, 0.7, n) + 1.0 * member
    offline = roc_auc_score(member, lira_scores(target, reference, is_in, online=False))
    online = roc_auc_score(member, lira_scores(target, reference, is_in, online=True))
    unshrunk = roc_auc_score(member, lira_scores(target, reference, is_in, online=True, shrink=False))
    assert online >= offline - 0.005 and online > unshrunk


def test_shrinkage_vanishes_with_many_reference_models_and_varied_shifts():
    rng = np.random.default_rng(4)
    n, m = 2000, 32
    shift = rng.choice([0.0, 3.0], n)  # some samples are memorised, others not at all
    half = rng.random((m // 2, n)) < 0.5
    is_in = np.concatenate([half, ~half])
    reference = rng.normal(0, 0.3, (m, n)) + shift * is_in
    member = rng.random(n) < 0.5
    target = rng.normal(0, 0.3, n) + shift * member
    shrunk = lira_scores(target, reference, is_in, online=True)
    plain = lira_scores(target, reference, is_in, online=True, shrink=False)
    assert np.corrcoef(shrunk, plain)[0, 1] > 0.99


def test_per_sample_variance_uses_each_samples_own_spread():
    ref = np.array([[0.0, 0.0], [1.0, 4.0], [2.0, 8.0]])  # sample 0 spread 1, sample 1 spread 4
    is_in = np.zeros_like(ref, bool)
    pooled = lira_scores(np.array([3.0, 12.0]), ref, is_in, online=False)
    own = lira_scores(np.array([3.0, 12.0]), ref, is_in, online=False, per_sample_variance=True)
    assert own == pytest.approx([2.0, 2.0])
    assert pooled[1] > pooled[0]  # one pooled spread: the wide sample looks more extreme
    assert make_attack("lira_online_pervar").per_sample_variance and make_attack("lira_offline_pervar").needs_reference
