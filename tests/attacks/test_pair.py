"""Pair and multi-version attacks: the dense original's signals travel as Signals.versions; without them the
audit skips the pair attacks with a reason; multi-version LiRA reduces to LiRA for one version and gains from a
second version that leaks."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfprune_mia.attacks import MembershipSet, Signals, make_attack
from tfprune_mia.attacks.pair import multiversion_lira_scores
from tfprune_mia.attacks.reference import lira_scores
from tfprune_mia.audit import audit
from tfprune_mia.errors import ConfigError
from tests.attacks.test_all_attacks import scenario


def test_one_version_offline_is_single_model_offline_lira():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (5, 300))
    target = rng.normal(0, 1, 300)
    is_in = np.zeros((5, 300), bool)
    single = lira_scores(target, reference, is_in, online=False)
    multi = multiversion_lira_scores(target[None], reference[:, None], is_in, online=False)
    # equal up to the ridge that keeps the covariance invertible (1e-3 of the variance)
    assert np.corrcoef(single, multi)[0, 1] > 0.9999
    assert multi == pytest.approx(single / np.sqrt(1.001), rel=1e-6)


def multiversion_world(rng, n, m, gaps):
    """k versions' statistics: version j shifts members by gaps[j]; per-sample difficulty shared by all."""
    difficulty = rng.normal(0, 2, n)
    member = rng.random(n) < 0.5
    half = rng.random((m // 2, n)) < 0.5
    is_in = np.concatenate([half, ~half])
    gaps = np.asarray(gaps)[:, None]
    reference = np.stack([difficulty + rng.normal(0, 0.5, (len(gaps), n)) + gaps * row for row in is_in])
    target = difficulty + rng.normal(0, 0.5, (len(gaps), n)) + gaps * member
    return target, reference, is_in, member


@pytest.mark.parametrize("online", [False, True])
def test_a_leaky_dense_version_adds_to_the_released_one(online):
    target, reference, is_in, member = multiversion_world(np.random.default_rng(1), 3000, 8, [0.5, 1.5])
    released = roc_auc_score(member, lira_scores(target[0], reference[:, 0], is_in, online))
    both = roc_auc_score(member, multiversion_lira_scores(target, reference, is_in, online))
    assert both > released + 0.05


def test_pair_attacks_are_skipped_where_the_model_is_released_alone():
    shadow, target, member, reference = scenario(gap=3.0)
    alone = MembershipSet(target.with_versions([]), member.astype(int))
    result = audit(alone, shadow, ("conf", "pair_conf", "pair_lira_offline"), reference, bootstrap_resamples=0)
    assert result["conf"].ran
    for name in ("pair_conf", "pair_lira_offline"):
        assert not result[name].ran and "no pair" in result[name].skipped
    paired = audit(MembershipSet(target, member.astype(int)), shadow, ("pair_conf",), reference,
                   bootstrap_resamples=0)
    assert paired["pair_conf"]["auc"] > 0.65


def test_a_target_with_versions_but_shadows_without_is_one_clear_error():
    shadow, target, member, reference = scenario(gap=3.0)
    bare_shadow = MembershipSet(shadow.signals.with_versions([]), shadow.is_member)
    with pytest.raises(ConfigError, match="shadow models' signals carry none"):
        make_attack("pair_lr").run(bare_shadow, target, reference)


def test_versions_follow_subset_and_concat():
    _, target, _, _ = scenario(gap=1.0)
    part = target.subset(np.arange(10))
    assert len(part.versions) == 1 and len(part.versions[0]) == 10
    both = Signals.concat([part, target.subset(np.arange(10, 25))])
    assert len(both.versions[0]) == 25
    np.testing.assert_array_equal(both.versions[0].posteriors, target.versions[0].posteriors[:25])
    with pytest.raises(ConfigError, match="with and without released versions"):
        Signals.concat([part, part.with_versions([])])
    with pytest.raises(ConfigError, match="other samples"):
        part.with_versions([target.subset(np.arange(5))])
