"""Pair and multi-version attacks: the attacker holds the dense original next to the released pruned model
(a public checkpoint beside the shipped compressed one), or several released sparsities (CompLeak, USENIX
Security 2026). Membership shows in how a sample's output changes between versions: pruning then fine-tuning on
the members moves members and non-members differently.

The other versions' signals on the same samples arrive as `Signals.versions` (see attacks/base.py), for the
target, the shadows and the reference models alike; a model released alone (the original setting) has none, and
the audit skips these attacks there with the reason.

- pair_conf: the change in calibrated (logit-scaled) confidence from the dense original to the released model,
  with class-wise thresholds learned on the shadows' dense/pruned pairs (direction learned too: which way members
  move is an empirical question). The loss itself would saturate at 0 for fitted members in both versions and
  hide the change; the logit scale keeps it.
- pair_lr: logistic regression on every version's calibrated confidence and entropy and the confidence changes
  between versions, learned on the shadows' pairs (the attacker with both models and a shadow pipeline).
- pair_lira_offline / pair_lira_online: LiRA on the vector of every version's logit-scaled confidence, calibrated
  per sample on the reference models' own version pairs (Carlini et al., S&P 2022, made multivariate): a Gaussian
  with per-sample means and a pooled (fixed) covariance. Offline, the Neyman-Pearson statistic for a member
  shift of equal size in every version, d' S^-1 (phi - mu_out) with d = (1, ..., 1), normalised; online, the
  Gaussian log-likelihood ratio between IN and OUT, with shrunk IN shifts as single-model online LiRA.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tfprune_mia.attacks.base import ATTACKS, Attack, ReferenceSignals
from tfprune_mia.attacks.reference import MIN_STD, ReferenceAttack, _masked_median, shrunk_shift
from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.attacks.threshold import ThresholdAttack, negative_entropy
from tfprune_mia.errors import ConfigError

# Logit-scaled confidences of fitted members reach +-40; clipping keeps one saturated sample from dominating a
# covariance or a linear model without changing any ranking that matters.
STAT_CLIP = 30.0


def version_stack(signals: Signals, statistic: str) -> np.ndarray:
    """[1 + num_versions, n]: a per-sample statistic of the released model, then of each other version."""
    if not signals.versions:
        raise ConfigError("pair attacks need the attacked model's other released versions (Signals.versions); "
                          "attack a pruned setting, whose dense original is attached")
    return np.stack([getattr(s, statistic) for s in (signals,) + tuple(signals.versions)])


def _clipped(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -STAT_CLIP, STAT_CLIP)


@ATTACKS.register("pair_conf")
class PairConfidenceAttack(ThresholdAttack):
    """Change in calibrated confidence between the dense original and the released model, class-wise
    thresholds on the shadows' pairs."""

    needs_versions = True
    sign = 1.0

    def raw_score(self, signals: Signals) -> np.ndarray:
        confidence = _clipped(version_stack(signals, "logit_confidence"))
        return self.sign * (confidence[0] - confidence[1])

    def fit(self, shadow: MembershipSet, reference=None) -> "PairConfidenceAttack":
        self.sign = 1.0
        gain = self.raw_score(shadow.signals)
        member = shadow.is_member.astype(bool)
        # Fine-tuning after pruning refits the members, but the dense model may have fitted them harder still:
        # take the direction the shadows show.
        if np.median(gain[member]) < np.median(gain[~member]):
            self.sign = -1.0
        return super().fit(shadow, reference)


def pair_features(signals: Signals) -> np.ndarray:
    """Per version: clipped logit-scaled confidence and negative entropy; per other version: the absolute change
    of the confidence from the released model (a non-linear term the linear model cannot build itself)."""
    confidence = _clipped(version_stack(signals, "logit_confidence"))
    entropy = np.stack([negative_entropy(s) for s in (signals,) + tuple(signals.versions)])
    change = np.abs(confidence[1:] - confidence[0])
    return np.concatenate([confidence, entropy, change]).T


@ATTACKS.register("pair_lr")
class PairLogisticAttack(Attack):
    """Logistic regression on the versions' confidences, entropies and changes, trained on shadow pairs."""

    needs_versions = True
    decision_threshold = 0.0

    def fit(self, shadow: MembershipSet, reference=None) -> "PairLogisticAttack":
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        self.model.fit(pair_features(shadow.signals), shadow.is_member.astype(int))
        return self

    def score(self, signals: Signals, reference=None) -> np.ndarray:
        return self.model.decision_function(pair_features(signals))


def _pooled_covariance(values: np.ndarray, mask: np.ndarray, centre: np.ndarray) -> Optional[np.ndarray]:
    """values [m, k, n], mask [m, n], centre [k, n]: residual covariance [k, k] pooled over samples with >= 2
    selected models (k-1 dof per sample); None when no sample has 2."""
    counts = mask.sum(axis=0)
    usable = counts >= 2
    if not usable.any():
        return None
    residual = np.where(mask[:, None, usable], values[:, :, usable] - centre[None, :, usable], 0.0)
    return np.einsum("mkn,mln->kl", residual, residual) / np.sum(counts[usable] - 1)


def _regularised(covariance: np.ndarray) -> np.ndarray:
    """A covariance safe to invert: versions can be nearly identical (a lightly pruned model), which makes the
    covariance near-singular; a ridge of 1e-3 of the mean variance keeps the statistic stable."""
    k = len(covariance)
    ridge = 1e-3 * max(float(np.trace(covariance)) / k, MIN_STD ** 2)
    return covariance + ridge * np.eye(k)


def _gaussian_log_density(x: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """log N(x[:, i]; mean[:, i], covariance) per sample i, up to the constant shared by every sample."""
    chol = np.linalg.cholesky(covariance)
    whitened = np.linalg.solve(chol, x - mean)
    return -0.5 * np.sum(whitened ** 2, axis=0) - np.sum(np.log(np.diag(chol)))


def multiversion_lira_scores(target: np.ndarray, reference: np.ndarray, is_in: np.ndarray,
                             online: bool) -> np.ndarray:
    """target [k, n] and reference [m, k, n]: k versions' statistics of the target and of m reference models;
    is_in [m, n]. With k = 1 offline this is single-model offline LiRA's z-score."""
    out = ~is_in
    if not out.any(axis=0).all():
        raise ConfigError("pair LiRA needs at least one OUT reference model for every target sample; "
                          "use more shadow models (--num_shadows)")
    mu_out = np.stack([_masked_median(reference[:, j], out) for j in range(reference.shape[1])])
    cov_out = _pooled_covariance(reference, out, mu_out)
    if cov_out is None:  # a single OUT model: the spread across samples
        cov_out = np.atleast_2d(np.cov(reference.transpose(1, 0, 2)[:, out]))
    cov_out = _regularised(cov_out)
    if not online:
        direction = np.linalg.solve(cov_out, np.ones(len(cov_out)))
        return direction @ (target - mu_out) / np.sqrt(direction @ np.ones(len(cov_out)))
    if not is_in.any(axis=0).all():
        raise ConfigError("online pair LiRA needs at least one IN reference model for every target sample; "
                          "use --num_reference_models >= 2 (an even number)")
    mu_in = np.stack([_masked_median(reference[:, j], is_in) for j in range(reference.shape[1])])
    cov_in = _pooled_covariance(reference, is_in, mu_in)
    cov_in = cov_out if cov_in is None else _regularised(cov_in)
    noise = np.diag(cov_in)[:, None] / is_in.sum(axis=0) + np.diag(cov_out)[:, None] / out.sum(axis=0)
    mu_in = np.stack([mu_out[j] + shrunk_shift(mu_in[j], mu_out[j], noise[j]) for j in range(len(mu_in))])
    return _gaussian_log_density(target, mu_in, cov_in) - _gaussian_log_density(target, mu_out, cov_out)


class PairLiRA(ReferenceAttack):
    needs_versions = True
    decision_threshold = 0.0

    def score(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        reference = self._check(signals, reference)
        target = _clipped(version_stack(signals, "logit_confidence"))
        if any(len(m.versions) != len(signals.versions) for m in reference.models):
            raise ConfigError("the reference models carry another number of released versions than the target; "
                              "rebuild the reference signals with the same versions")
        models = np.stack([_clipped(version_stack(m, "logit_confidence")) for m in reference.models])
        return multiversion_lira_scores(target, models, reference.is_in, self.online)


@ATTACKS.register("pair_lira_offline")
class PairLiRAOffline(PairLiRA):
    """Offline LiRA over the released and dense versions, calibrated on OUT reference models' version pairs."""


@ATTACKS.register("pair_lira_online")
class PairLiRAOnline(PairLiRA):
    """Online LiRA over the released and dense versions, with IN and OUT reference models' version pairs."""

    online = True
    needs_in_models = True
