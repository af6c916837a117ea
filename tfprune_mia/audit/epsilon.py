"""Empirical lower bounds on a model's (epsilon, delta) from canary membership scores.

A DP guarantee promises that no attack distinguishes a record's presence better than e^epsilon allows; an attack
that does better is statistical evidence that the promise fails. Three estimators, all fed by any attack's scores:

- `one_run_audit` (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023, main
  theorem and its auditing algorithm): m canaries, each included independently with probability 1/2 in ONE
  training run; guess IN for the k+ highest scores, OUT for the k- lowest, abstain on the rest. With r guesses
  and v correct, an (eps, delta)-DP training run allows v only with p-value P[Binom(r, q) >= v] + 2 m delta alpha,
  q = e^eps / (1 + e^eps), alpha = max_i (1/i) P[v - i <= Binom(r, q) < v]; the bound is the largest eps whose
  p-value is below 1 - confidence.
- `multi_run_audit(..., method="clopper_pearson")` (Jagielski, Ullman & Oprea, "Auditing Differentially Private
  Machine Learning: How Private is Private SGD?", NeurIPS 2020): independent trials (a trained model each,
  with or without the canary); a threshold attack's false positive / negative rates, bounded from above with
  one-sided Clopper-Pearson intervals, give eps >= log((1 - delta - FNR) / FPR) (and the symmetric term).
- `multi_run_audit(..., method="gdp")` (Nasr, Hayes, Steinke, Balle, Tramer, Jagielski, Carlini & Terzis, "Tight
  Auditing of Differentially Private Machine Learning", USENIX Security 2023): the same rate bounds read
  as a Gaussian trade-off curve, mu = Phi^-1(1 - FPR) - Phi^-1(FNR), converted to (eps, delta) with Dong, Roth &
  Su's formula ("Gaussian Differential Privacy", JRSS-B 2022, Cor. 2.13). Tighter than Clopper-Pearson, but a
  lower bound only for mechanisms whose trade-off curve is Gaussian (DP-SGD's is, approximately): an estimate.

Choosing the guessing rule (k+, k-) or the threshold after seeing which canaries were IN is a multiple comparison:
the best of many tries is optimistic. Every audit pays for its choice: `selection="bonferroni"` (the default) tries
every candidate at confidence 1 - (1 - confidence) / choices and keeps the best, valid by the union bound;
`"holdout"` picks the candidate on a random half of the canaries (or trials) and bounds epsilon on the other half
only (valid since the halves' inclusions are independent: conditioned on the first half, the run is still
(eps, delta)-DP in each canary of the second); `"fixed"` uses a rule chosen in advance.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, special, stats

from tfprune_mia.errors import ConfigError

SELECTIONS = ("bonferroni", "holdout", "fixed")
MULTI_RUN_METHODS = ("clopper_pearson", "gdp")
# (k+, k-) as fractions of the canaries: one-sided and symmetric guessing at precisions from 1% to all canaries.
# 21 choices cost a Bonferroni factor of 21, about 0.1-0.2 in epsilon at m = 1000.
DEFAULT_GUESS_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
DEFAULT_K_GRID = tuple(pair for f in DEFAULT_GUESS_FRACTIONS for pair in ((f, 0.0), (0.0, f), (f, f)))
# Threshold candidates as score quantiles; the extremes matter most since epsilon lives in the low-FPR corner.
DEFAULT_THRESHOLD_QUANTILES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
_TOLERANCE = 1e-10


@dataclasses.dataclass(frozen=True)
class EpsilonBound:
    """One empirical epsilon lower bound: with probability >= `confidence` the audited run is not
    (eps, delta)-DP for any eps < `epsilon` (for `gdp`: under the Gaussian trade-off assumption).

    canaries: m (one run) or independent trials (multi-run) behind the bound; guesses / correct: r and v (for
    multi-run, the evaluated trials and the attack's correct calls); choices: candidates the selection paid for.
    details: method-specific numbers (k+, k-, threshold, rate bounds, mu), all JSON scalars.
    """

    method: str
    epsilon: float
    delta: float
    confidence: float
    selection: str
    canaries: int
    guesses: int
    correct: int
    choices: int
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        # Frozen all the way down: a result read by tables and gates must not change under them.
        object.__setattr__(self, "details", types.MappingProxyType(dict(self.details)))

    def to_dict(self) -> Dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["details"] = dict(self.details)
        return fields

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpsilonBound":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        missing = names - set(data) - {"details"}
        if unknown or missing:
            raise ConfigError(f"an epsilon bound record has fields {sorted(unknown)} unknown and {sorted(missing)} "
                              "missing; it was written by another version: re-run the audit")
        return cls(**data)


# ---- one training run (Steinke, Nasr & Jagielski 2023) ----------------------------------------------------------

def one_run_p_value(epsilon: float, delta: float, canaries: int, guesses: int, correct: int) -> float:
    """P-value of observing `correct` right guesses out of `guesses` if the run were (epsilon, delta)-DP
    in each of `canaries` canaries (Steinke et al. 2023, main theorem)."""
    _check_counts(canaries, guesses, correct)
    if correct == 0:
        return 1.0
    q = special.expit(epsilon)  # e^eps / (1 + e^eps) without overflow
    tail = stats.binom.sf(correct - 1, guesses, q)
    if delta == 0:
        return float(min(1.0, tail))
    # P[v - i <= Binom < v] for i = 1..v: cumulative pmf walking down from v - 1.
    window = np.cumsum(stats.binom.pmf(np.arange(correct - 1, -1, -1), guesses, q))
    alpha = float(np.max(window / np.arange(1, correct + 1)))
    return float(min(1.0, tail + alpha * delta * 2 * canaries))


def one_run_epsilon(canaries: int, guesses: int, correct: int, delta: float, confidence: float = 0.95) -> float:
    """The largest epsilon whose one-run p-value is below 1 - confidence, found by bracketing the crossing
    (Steinke et al. bisect; Brent's method reaches the same point in fewer steps);
    0 when the guesses are no better than chance at that confidence."""
    _check_probability("delta", delta, allow_zero=True)
    _check_probability("confidence", confidence)
    significance = 1.0 - confidence
    p_value = lambda eps: one_run_p_value(eps, delta, canaries, guesses, correct)  # noqa: E731
    return _largest_below(p_value, significance)


def guess_counts(scores: np.ndarray, included: np.ndarray, k_plus: int, k_minus: int) -> Tuple[int, int]:
    """(r, v): guess IN for the k_plus highest scores and OUT for the k_minus lowest; v counts the right ones.

    Ties go by canary order, which is independent of the inclusions, so the guesses stay a function of the
    scores alone."""
    scores, included = _check_scores(scores, included)
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > len(scores):
        raise ConfigError(f"k_plus={k_plus}, k_minus={k_minus}: each must be >= 0 and together at most the "
                          f"{len(scores)} canaries")
    order = np.argsort(scores, kind="stable")
    guessed_out = order[:k_minus]
    guessed_in = order[len(order) - k_plus:] if k_plus else order[:0]
    correct = int(included[guessed_in].sum()) + int((~included[guessed_out]).sum())
    return k_plus + k_minus, correct


def one_run_audit(scores: Sequence[float], included: Sequence[bool], delta: float, confidence: float = 0.95,
                  selection: str = "bonferroni", k_grid: Sequence[Tuple[float, float]] = DEFAULT_K_GRID,
                  k_plus: Optional[int] = None, k_minus: Optional[int] = None, seed: int = 0) -> EpsilonBound:
    """Epsilon lower bound from one training run's canary scores (higher score = more likely IN).

    scores / included: one entry per canary; `included` is the secret coin flip of each canary.
    k_grid: candidate (k+, k-) as fractions of the canaries, for `bonferroni` and `holdout`.
    k_plus / k_minus: the guess counts for `selection="fixed"` (chosen before seeing the inclusions).
    seed: the random halving of `holdout`.
    """
    scores, included = _check_scores(scores, included)
    _check_probability("delta", delta, allow_zero=True)
    _check_probability("confidence", confidence)
    m = len(scores)
    if selection == "fixed":
        if k_plus is None or k_minus is None:
            raise ConfigError("selection='fixed' needs k_plus and k_minus; pass both, or use "
                              "selection='bonferroni' to search a grid")
        r, v = guess_counts(scores, included, k_plus, k_minus)
        return _one_run_result(one_run_epsilon(m, r, v, delta, confidence), delta, confidence, selection, m, r, v,
                               1, k_plus, k_minus)
    if k_plus is not None or k_minus is not None:
        raise ConfigError(f"k_plus/k_minus are only used with selection='fixed', not {selection!r}; drop them or "
                          "pass selection='fixed'")
    grid = _check_k_grid(k_grid)
    if selection == "bonferroni":
        corrected = 1.0 - (1.0 - confidence) / len(grid)
        best = None
        for pair in grid:
            kp, km = _counts_for(pair, m)
            r, v = guess_counts(scores, included, kp, km)
            # p grows with eps, so a choice already failing at the best bound so far cannot beat it.
            if best is not None and (not r or one_run_p_value(best[0], delta, m, r, v) >= 1.0 - corrected):
                continue
            eps = one_run_epsilon(m, r, v, delta, corrected) if r else 0.0
            if best is None or eps > best[0]:
                best = (eps, r, v, kp, km)
        eps, r, v, kp, km = best
        return _one_run_result(eps, delta, confidence, selection, m, r, v, len(grid), kp, km)
    if selection == "holdout":
        if m < 4:
            raise ConfigError(f"selection='holdout' needs at least 4 canaries, got {m}; add canaries or use "
                              "selection='bonferroni'")
        choose, evaluate = _halves(m, seed)

        def bound_on(part, pair):
            kp, km = _counts_for(pair, len(part))
            r, v = guess_counts(scores[part], included[part], kp, km)
            return (one_run_epsilon(len(part), r, v, delta, confidence) if r else 0.0), r, v, kp, km

        pair = max(grid, key=lambda p: bound_on(choose, p)[0])
        eps, r, v, kp, km = bound_on(evaluate, pair)
        return _one_run_result(eps, delta, confidence, selection, len(evaluate), r, v, len(grid), kp, km,
                               chosen_on=len(choose))
    raise ConfigError(f"unknown selection {selection!r}; choose one of: {', '.join(SELECTIONS)}")


def _one_run_result(eps, delta, confidence, selection, m, r, v, choices, k_plus, k_minus, **extra) -> EpsilonBound:
    return EpsilonBound("one_run", float(eps), float(delta), float(confidence), selection, int(m), int(r), int(v),
                        int(choices), {"k_plus": int(k_plus), "k_minus": int(k_minus), **extra})


def _counts_for(pair: Tuple[float, float], m: int) -> Tuple[int, int]:
    # The epsilon keeps 0.29 * 100 at 29 despite its binary representation (28.999...).
    return int(math.floor(pair[0] * m + 1e-9)), int(math.floor(pair[1] * m + 1e-9))


def _check_k_grid(k_grid) -> Tuple[Tuple[float, float], ...]:
    grid = tuple((float(a), float(b)) for a, b in k_grid)
    if not grid or any(a < 0 or b < 0 or a + b > 1 or a + b == 0 for a, b in grid):
        raise ConfigError(f"k_grid {list(k_grid)} must list (k+, k-) fractions >= 0 with 0 < k+ + k- <= 1")
    return grid


# ---- several training runs: Clopper-Pearson (Jagielski et al. 2020) and Gaussian DP (Nasr et al. 2023) ----------

def clopper_pearson_upper(errors: int, trials: int, significance: float) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate: P[rate > bound] <= significance."""
    if trials <= 0 or not 0 <= errors <= trials:
        raise ConfigError(f"{errors} errors out of {trials} trials: need 0 <= errors <= trials and trials > 0")
    if errors == trials:
        return 1.0
    return float(stats.beta.ppf(1.0 - significance, errors + 1, trials - errors))


def clopper_pearson_epsilon(fpr_upper: float, fnr_upper: float, delta: float) -> float:
    """eps >= max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)) from upper bounds on the
    rates (Jagielski et al. 2020); 0 when neither log is positive."""
    terms = [0.0]
    for a, b in ((fnr_upper, fpr_upper), (fpr_upper, fnr_upper)):
        if b > 0 and 1.0 - delta - a > 0:
            terms.append(math.log((1.0 - delta - a) / b))
    return max(terms)


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth & Su, Cor. 2.13)."""
    if mu <= 0:
        return 0.0
    second = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))  # e^eps * Phi(.) without overflow
    return max(0.0, float(special.ndtr(-epsilon / mu + mu / 2) - second))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon at which mu-GDP is (eps, delta)-DP: the root of gdp_delta(mu, eps) = delta."""
    _check_probability("delta", delta, allow_zero=False)
    if mu <= 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = max(1.0, mu * mu)
    while gdp_delta(mu, high) > delta:
        high *= 2.0
    return float(optimize.brentq(lambda eps: gdp_delta(mu, eps) - delta, 0.0, high, xtol=1e-12, rtol=1e-12))


def gdp_mu(fpr_upper: float, fnr_upper: float) -> float:
    """mu = Phi^-1(1 - FPR) - Phi^-1(FNR): the Gaussian trade-off curve through the rate bounds (0 at chance)."""
    if fpr_upper >= 1.0 or fnr_upper >= 1.0:
        return 0.0
    return max(0.0, float(stats.norm.isf(fpr_upper) - stats.norm.ppf(fnr_upper)))


def _rate_bounds(scores, included, threshold, significance) -> Dict[str, float]:
    positives, negatives = int(included.sum()), int((~included).sum())
    predicted = scores >= threshold
    false_negatives = int((included & ~predicted).sum())
    false_positives = int((~included & predicted).sum())
    # Both rates must hold at once: the union bound splits the error budget between them.
    return {"threshold": float(threshold), "fpr": false_positives / negatives, "fnr": false_negatives / positives,
            "fpr_upper": clopper_pearson_upper(false_positives, negatives, significance / 2),
            "fnr_upper": clopper_pearson_upper(false_negatives, positives, significance / 2),
            "correct": positives + negatives - false_negatives - false_positives}


def _multi_run_epsilon(method: str, rates: Mapping[str, float], delta: float) -> Tuple[float, Dict[str, float]]:
    if method == "clopper_pearson":
        return clopper_pearson_epsilon(rates["fpr_upper"], rates["fnr_upper"], delta), {}
    mu = gdp_mu(rates["fpr_upper"], rates["fnr_upper"])
    return gdp_epsilon(mu, delta), {"mu_lower": mu}


def multi_run_audit(scores: Sequence[float], included: Sequence[bool], delta: float, confidence: float = 0.95,
                    method: str = "clopper_pearson", selection: str = "bonferroni",
                    quantiles: Sequence[float] = DEFAULT_THRESHOLD_QUANTILES, threshold: Optional[float] = None,
                    seed: int = 0) -> EpsilonBound:
    """Epsilon lower bound from independent trials: entry t is the attack's score on the canary in trained
    model t and whether that model trained on it. Entries must be independent (one canary, or one canary
    group, per model); for many canaries in one model use `one_run_audit`.

    The attack calls IN when score >= threshold; `threshold` is fixed in advance for `selection="fixed"`,
    otherwise chosen among the score `quantiles` (Bonferroni-corrected, or on a held-out half).
    """
    scores, included = _check_scores(scores, included)
    _check_probability("delta", delta, allow_zero=False)
    _check_probability("confidence", confidence)
    if method not in MULTI_RUN_METHODS:
        raise ConfigError(f"unknown multi-run method {method!r}; choose one of: {', '.join(MULTI_RUN_METHODS)}")
    significance = 1.0 - confidence

    def bound(part, cut, level):
        if included[part].all() or not included[part].any():
            raise ConfigError("the trials need models both with and without the canary; include it in about "
                              "half of them")
        rates = _rate_bounds(scores[part], included[part], cut, level)
        eps, extra = _multi_run_epsilon(method, rates, delta)
        return eps, {**rates, **extra}

    def candidates(part):
        return np.unique(np.quantile(scores[part], _check_quantiles(quantiles)))

    n = len(scores)
    if selection == "fixed":
        if threshold is None:
            raise ConfigError("selection='fixed' needs a threshold chosen in advance; pass threshold= or use "
                              "selection='bonferroni'")
        everything = np.arange(n)
        eps, details = bound(everything, threshold, significance)
        return _multi_run_result(method, eps, delta, confidence, selection, n, 1, details)
    if threshold is not None:
        raise ConfigError(f"threshold= is only used with selection='fixed', not {selection!r}")
    if selection == "bonferroni":
        everything = np.arange(n)
        cuts = candidates(everything)
        results = [bound(everything, cut, significance / len(cuts)) for cut in cuts]
        eps, details = max(results, key=lambda result: result[0])
        return _multi_run_result(method, eps, delta, confidence, selection, n, len(cuts), details)
    if selection == "holdout":
        choose, evaluate = _halves(n, seed)
        cuts = candidates(choose)
        cut = max(cuts, key=lambda c: bound(choose, c, significance)[0])
        eps, details = bound(evaluate, cut, significance)
        return _multi_run_result(method, eps, delta, confidence, selection, len(evaluate), len(cuts),
                                 {**details, "chosen_on": len(choose)})
    raise ConfigError(f"unknown selection {selection!r}; choose one of: {', '.join(SELECTIONS)}")


def _multi_run_result(method, eps, delta, confidence, selection, trials, choices, details) -> EpsilonBound:
    details = dict(details)
    correct = int(details.pop("correct"))
    return EpsilonBound(method, float(eps), float(delta), float(confidence), selection, int(trials), int(trials),
                        correct, int(choices), details)


def _check_quantiles(quantiles) -> np.ndarray:
    levels = np.asarray(quantiles, dtype=float)
    if levels.ndim != 1 or not len(levels) or np.any((levels <= 0) | (levels >= 1)):
        raise ConfigError(f"quantiles {list(quantiles)} must be a non-empty list of levels in (0, 1)")
    return levels


# ---- shared checks and search ------------------------------------------------------------------------------------

def _largest_below(p_value: Callable[[float], float], significance: float) -> float:
    """The largest eps >= 0 with p_value(eps) < significance (p grows with eps): bracket the crossing by
    doubling, then Brent's method (bisection safeguarded by secant steps, ~10 evaluations instead of ~35)."""
    if p_value(0.0) >= significance:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(high) < significance:
        low, high = high, 2.0 * high
        if high > 1e4:  # cannot happen for finite counts (q -> 1 makes the tail 1); guards a malformed p_value
            return low
    root = optimize.brentq(lambda eps: p_value(eps) - significance, low, high, xtol=_TOLERANCE, rtol=_TOLERANCE)
    # brentq may land a hair above the crossing; step back so the returned eps itself passes the test.
    return float(root if p_value(root) < significance else max(low, root - _TOLERANCE * max(1.0, root)))


def _halves(n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _check_scores(scores, included) -> Tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included)
    if scores.ndim != 1 or included.shape != scores.shape or not len(scores):
        raise ConfigError(f"scores {scores.shape} and included {included.shape} must be equally long 1-d arrays, "
                          "one entry per canary (or trial)")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("membership scores contain NaN or inf; fix the attack (or drop those canaries) first")
    if included.dtype != bool:
        if not np.isin(included, (0, 1)).all():
            raise ConfigError("included must hold only True/False (or 1/0): whether each canary was trained on")
        included = included.astype(bool)
    return scores, included


def _check_counts(canaries: int, guesses: int, correct: int) -> None:
    if not 0 <= correct <= guesses <= canaries:
        raise ConfigError(f"counts m={canaries}, r={guesses}, v={correct}: need 0 <= v <= r <= m")


def _check_probability(name: str, value: float, allow_zero: bool = False) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise ConfigError(f"{name}={value} must be in {'[0' if allow_zero else '(0'}, 1)")
