"""Reference-model attacks: LiRA (Carlini et al., S&P 2022) and RMIA (Zarifzadeh et al., ICML 2024).

They score a target sample by comparing the target model's output on it with the outputs of reference models
that did (IN) or did not (OUT) train on it. The experiment uses the attacker's shadow models as OUT reference
models (they train on the shadow half, disjoint from every target sample) and, for the online variants, extra
reference models trained on random halves of the target pool, paired so each target sample is IN for exactly
half of them.

Deviations from the papers, kept deliberately because we have few reference models (2-10, not 64-256):
- `lira_*` use the fixed (global) variance Carlini et al. recommend with few reference models: the within-sample
  spread of the statistic around each sample's median, pooled over samples. With one IN model per sample the IN
  spread cannot be estimated, and the OUT spread is used for IN too. `lira_*_pervar` use the paper's per-sample
  variances (worth it from ~16 reference models on; samples with fewer than 2 models on a side fall back to the
  pooled one). No query augmentations (signals have none).
- Online LiRA shrinks each sample's IN-OUT shift towards the mean shift over samples (empirical Bayes, James-Stein
  style) by the shift's estimation noise: with 2 reference models each sample has a single IN model, whose noise
  would otherwise flip the sign of the likelihood ratio for many samples and rank them worse than offline LiRA
  (the original demo: online AUC 0.57 vs offline 0.66). With no usable per-sample spread the ranking equals
  offline LiRA's; with tens of models the shrinkage vanishes and the paper's online test remains.
- Online RMIA averages IN and OUT reference models with equal weight (0.5 each) so that the 5 OUT-only
  shadows do not swamp the few IN models; with balanced IN/OUT sets this is the paper's plain average.
- RMIA's offline correction a is fixed at the library default 0.3 (tuning it needs IN models).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import norm

from tfprune_mia.attacks.base import ATTACKS, Attack, ReferenceSignals
from tfprune_mia.attacks.signals import MembershipSet, Signals
from tfprune_mia.errors import ConfigError

MIN_STD = 1e-6


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-sample (column) median over the models (rows) where mask is True; NaN where none is."""
    masked = np.where(mask, values, np.nan)
    with np.errstate(all="ignore"):
        return np.nanmedian(masked, axis=0) if masked.size else np.full(values.shape[1], np.nan)


def pooled_std(values: np.ndarray, mask: np.ndarray, centre: np.ndarray) -> Optional[float]:
    """sqrt(mean squared deviation from each sample's centre) over samples with >= 2 selected models, with
    the per-sample (k-1) degrees-of-freedom correction; None when no sample has 2 values."""
    counts = mask.sum(axis=0)
    usable = counts >= 2
    if not usable.any():
        return None
    deviations = np.where(mask[:, usable], values[:, usable] - centre[usable], 0.0)
    return float(max(np.sqrt(np.sum(deviations ** 2) / np.sum(counts[usable] - 1)), MIN_STD))


def per_sample_std(values: np.ndarray, mask: np.ndarray, centre: np.ndarray, fallback: float) -> np.ndarray:
    """Each sample's own spread around its centre over the selected models (k-1 dof); `fallback` where a sample
    has fewer than 2 selected models."""
    counts = mask.sum(axis=0)
    squares = np.sum(np.where(mask, (values - centre) ** 2, 0.0), axis=0)
    with np.errstate(all="ignore"):
        std = np.sqrt(squares / np.maximum(counts - 1, 1))
    return np.where(counts >= 2, np.maximum(std, MIN_STD), fallback)


def shrunk_shift(mu_in: np.ndarray, mu_out: np.ndarray, noise_variance: np.ndarray) -> np.ndarray:
    """Per-sample IN-OUT shifts shrunk towards their mean by their estimation noise (empirical Bayes): weight
    tau^2 / (tau^2 + v_i), where tau^2 = var(shift) - mean(v) is the spread of the true shifts over samples."""
    shift = mu_in - mu_out
    mean = float(np.mean(shift))
    tau2 = max(float(np.var(shift)) - float(np.mean(noise_variance)), 0.0)
    weight = tau2 / np.maximum(tau2 + noise_variance, MIN_STD ** 2)
    return mean + weight * (shift - mean)


def lira_scores(target_stat: np.ndarray, reference_stat: np.ndarray, is_in: np.ndarray, online: bool,
                per_sample_variance: bool = False, shrink: bool = True) -> np.ndarray:
    """LiRA. Offline: the one-sided z-score (phi - mu_out) / sigma_out (monotone in the paper's Phi(.), without
    its saturation to 1 which would create ties). Online: the Gaussian log-likelihood ratio
    log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2), with mu_in - mu_out shrunk (see the module doc)
    unless shrink=False. Variances: pooled over samples (fixed variance), or per sample. Both put the decision
    boundary at 0."""
    out = ~is_in
    if not out.any(axis=0).all():
        raise ConfigError("LiRA needs at least one OUT reference model for every target sample; "
                          "use more shadow models (--num_shadows)")
    mu_out = _masked_median(reference_stat, out)
    sigma_out = pooled_std(reference_stat, out, mu_out)
    if sigma_out is None:  # a single OUT model: fall back to the spread across samples
        sigma_out = float(max(np.std(reference_stat[out]), MIN_STD))
    pooled_out = sigma_out
    if per_sample_variance:
        sigma_out = per_sample_std(reference_stat, out, mu_out, pooled_out)
    if not online:
        return (target_stat - mu_out) / sigma_out
    if not is_in.any(axis=0).all():
        raise ConfigError("online LiRA/RMIA need at least one IN reference model for every target sample; "
                          "use --num_reference_models >= 2 (an even number)")
    mu_in = _masked_median(reference_stat, is_in)
    sigma_in = pooled_std(reference_stat, is_in, mu_in) or pooled_out
    if per_sample_variance:
        sigma_in = per_sample_std(reference_stat, is_in, mu_in, sigma_in)
    if shrink:
        noise = sigma_in ** 2 / is_in.sum(axis=0) + sigma_out ** 2 / out.sum(axis=0)
        mu_in = mu_out + shrunk_shift(mu_in, mu_out, np.broadcast_to(noise, mu_in.shape))
    return norm.logpdf(target_stat, mu_in, sigma_in) - norm.logpdf(target_stat, mu_out, sigma_out)


def rmia_reference_probability(reference_p: np.ndarray, is_in: np.ndarray, online: bool, a: float) -> np.ndarray:
    """Pr(x) = average reference probability: online, IN and OUT means weighted 1/2 each; offline, the OUT mean
    linearly corrected for the missing IN models, (1 + a)/2 * mean_OUT + (1 - a)/2."""
    out = ~is_in
    mean_out = np.sum(np.where(out, reference_p, 0.0), axis=0) / np.maximum(out.sum(axis=0), 1)
    if not online:
        return (1 + a) / 2 * mean_out + (1 - a) / 2
    mean_in = np.sum(np.where(is_in, reference_p, 0.0), axis=0) / np.maximum(is_in.sum(axis=0), 1)
    return 0.5 * (mean_in + mean_out)


def rmia_scores(target_p: np.ndarray, reference_p: np.ndarray, is_in: np.ndarray, population_target_p: np.ndarray,
                population_reference_p: np.ndarray, online: bool, a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """Score(x) = fraction of population samples z with [Pr(x|t)/Pr(x)] / [Pr(z|t)/Pr(z)] >= gamma."""
    if online and not is_in.any(axis=0).all():
        raise ConfigError("online LiRA/RMIA need at least one IN reference model for every target sample; "
                          "use --num_reference_models >= 2 (an even number)")
    if len(population_target_p) == 0:
        raise ConfigError("RMIA needs population samples (non-members of every model); the victim dev split "
                          "is empty: use a larger dataset")
    ratio_x = target_p / np.maximum(rmia_reference_probability(reference_p, is_in, online, a), 1e-30)
    # z samples are OUT for every model; online, Pr(z) is their plain OUT mean, offline it gets the same
    # correction as x so that both ratios are on one scale.
    population_in = np.zeros_like(population_reference_p, bool)
    prob_z = rmia_reference_probability(population_reference_p, population_in, False, 1.0 if online else a)
    ratio_z = np.sort(population_target_p / np.maximum(prob_z, 1e-30))
    return np.searchsorted(ratio_z, ratio_x / gamma, side="right") / len(ratio_z)


class ReferenceAttack(Attack):
    needs_shadow = False
    needs_reference = True
    online = False

    def fit(self, shadow: MembershipSet, reference: Optional[ReferenceSignals] = None) -> "ReferenceAttack":
        # Nothing is learned from the shadow members/non-members: the reference models are the model of the
        # null/alternative distributions, per target sample.
        return self

    def _check(self, signals: Signals, reference: Optional[ReferenceSignals]) -> ReferenceSignals:
        if reference is None or not reference.models:
            raise ConfigError(f"{type(self).__name__} needs reference-model signals on the target samples; run it "
                              "through train_prune / attack, which compute them")
        if reference.is_in.shape[1] != len(signals):
            raise ConfigError("reference signals cover another set of samples than the target signals; "
                              "rebuild them for the same target samples")
        return reference


class LiRA(ReferenceAttack):
    decision_threshold = 0.0
    per_sample_variance = False

    def score(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        reference = self._check(signals, reference)
        return lira_scores(signals.logit_confidence, reference.statistic("logit_confidence"), reference.is_in,
                           self.online, self.per_sample_variance)


@ATTACKS.register("lira_offline")
class LiRAOffline(LiRA):
    """Offline LiRA: how far the target's logit-scaled confidence is above the OUT reference models'."""


@ATTACKS.register("lira_online")
class LiRAOnline(LiRA):
    """Online LiRA: Gaussian likelihood ratio between IN and OUT reference models' logit-scaled confidences."""

    online = True
    needs_in_models = True


@ATTACKS.register("lira_offline_pervar")
class LiRAOfflinePerSampleVariance(LiRAOffline):
    """Offline LiRA with each sample's own OUT variance (the paper's choice for many reference models)."""

    per_sample_variance = True


@ATTACKS.register("lira_online_pervar")
class LiRAOnlinePerSampleVariance(LiRAOnline):
    """Online LiRA with each sample's own IN and OUT variances (for tens of reference models)."""

    per_sample_variance = True


class RMIA(ReferenceAttack):
    decision_threshold = 0.5  # member when x's likelihood ratio beats at least half of the population
    offline_a = 0.3
    gamma = 1.0

    def score(self, signals: Signals, reference: Optional[ReferenceSignals] = None) -> np.ndarray:
        reference = self._check(signals, reference)
        if reference.population_target is None or not reference.population:
            raise ConfigError("RMIA needs population signals (target and reference models on non-member "
                              "samples); rebuild the reference signals with a population")
        return rmia_scores(signals.true_class_confidence, reference.statistic("true_class_confidence"),
                           reference.is_in, reference.population_target.true_class_confidence,
                           np.stack([s.true_class_confidence for s in reference.population]), self.online,
                           self.offline_a, self.gamma)


@ATTACKS.register("rmia_offline")
class RMIAOffline(RMIA):
    """Offline RMIA: OUT reference models only, with the linear correction a for the missing IN models."""


@ATTACKS.register("rmia_online")
class RMIAOnline(RMIA):
    """Online RMIA: IN and OUT reference models."""

    online = True
    needs_in_models = True
