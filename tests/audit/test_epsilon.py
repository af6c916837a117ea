"""Empirical epsilon lower bounds: the papers' formulas on hand-checked cases, and validity on mechanisms whose
epsilon is known (randomised response for the one-run audit, the Gaussian mechanism for the multi-run ones)."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from tfprune_mia.audit import epsilon
from tfprune_mia.errors import ConfigError


def brute_force_p_value(eps, delta, m, r, v):
    """Steinke et al. 2023 (main theorem), summed term by term from the binomial pmf."""
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [stats.binom.pmf(k, r, q) for k in range(r + 1)]
    tail = sum(pmf[v:])
    alpha = max(sum(pmf[v - i:v]) / i for i in range(1, v + 1)) if v else 0.0
    return min(1.0, tail + alpha * delta * 2 * m)


def grid_p_values(eps_grid, delta, m, r, v):
    """The same p-value on a whole eps grid at once (rows: eps, columns: outcomes 0..r)."""
    q = np.exp(eps_grid) / (1 + np.exp(eps_grid))
    pmf = stats.binom.pmf(np.arange(r + 1)[None, :], r, q[:, None])
    tail = pmf[:, v:].sum(axis=1)
    windows = np.stack([pmf[:, v - i:v].sum(axis=1) / i for i in range(1, v + 1)], axis=1)
    return np.minimum(1.0, tail + windows.max(axis=1) * delta * 2 * m)


def largest_eps_on_a_dense_grid(delta, m, r, v, significance=0.05):
    best, step = 0.0, 1e-2
    grid = np.arange(0, 12, step)
    while step >= 1e-8:  # refine around the last grid point that still passes, 100x finer each time
        best = grid[grid_p_values(grid, delta, m, r, v) < significance].max()
        step /= 100
        grid = np.arange(best - 200 * step, best + 200 * step, step)
    return best


@pytest.mark.parametrize("eps, delta, m, r, v", [
    (0.0, 0.0, 10, 10, 5), (1.0, 1e-5, 100, 40, 30), (2.5, 1e-3, 50, 20, 20), (0.3, 0.01, 200, 200, 120),
    (4.0, 1e-5, 1000, 12, 3)])
def test_p_value_is_the_papers_formula(eps, delta, m, r, v):
    assert epsilon.one_run_p_value(eps, delta, m, r, v) == pytest.approx(brute_force_p_value(eps, delta, m, r, v),
                                                                         abs=1e-12)


def test_all_correct_without_delta_has_a_closed_form():
    # P[Binom(r, q) >= r] = q^r = 0.05  =>  q = 0.05^(1/r), eps = log(q / (1 - q)).
    for r in (5, 10, 30):
        q = 0.05 ** (1 / r)
        assert epsilon.one_run_epsilon(r, r, r, delta=0.0) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    # Fewer than 5 all-correct guesses cannot beat chance at 95%: 0.5^4 > 0.05.
    assert epsilon.one_run_epsilon(4, 4, 4, delta=0.0) == 0.0


@pytest.mark.parametrize("delta, m, r, v", [(1e-5, 100, 40, 34), (1e-3, 60, 30, 27), (0.0, 1000, 100, 80),
                                            (1e-2, 30, 30, 30)])
def test_bound_is_the_largest_eps_with_p_below_005(delta, m, r, v):
    expected = largest_eps_on_a_dense_grid(delta, m, r, v)
    assert epsilon.one_run_epsilon(m, r, v, delta) == pytest.approx(expected, abs=1e-6)


def test_delta_term_lowers_the_bound():
    assert epsilon.one_run_epsilon(1000, 30, 30, 1e-3) < epsilon.one_run_epsilon(1000, 30, 30, 0.0)


def test_guesses_take_the_top_and_bottom_scores():
    scores = [0.9, 0.1, 0.8, 0.2, 0.5]
    included = [1, 0, 0, 0, 1]
    # IN for 0.9 (right) and 0.8 (wrong), OUT for 0.1 and 0.2 (both right).
    assert epsilon.guess_counts(np.array(scores), np.array(included), 2, 2) == (4, 3)
    assert epsilon.guess_counts(np.array(scores), np.array(included), 1, 0) == (1, 1)
    bound = epsilon.one_run_audit(scores, included, delta=0.0, selection="fixed", k_plus=2, k_minus=2)
    assert (bound.guesses, bound.correct, bound.choices) == (4, 3, 1)
    assert bound.epsilon == epsilon.one_run_epsilon(5, 4, 3, 0.0)


def test_bonferroni_keeps_the_best_choice_at_the_corrected_confidence():
    rng = np.random.default_rng(3)
    included = rng.random(400) < 0.5
    scores = included * 1.5 + rng.normal(size=400)
    grid = [(0.05, 0.0), (0.1, 0.1), (0.5, 0.5)]
    expected = []
    for kp_frac, km_frac in grid:
        kp, km = int(kp_frac * 400), int(km_frac * 400)
        order = np.argsort(scores)
        v = included[order[400 - kp:]].sum() + (~included[order[:km]]).sum() if kp else (~included[order[:km]]).sum()
        expected.append(epsilon.one_run_epsilon(400, kp + km, int(v), 1e-5, 1 - 0.05 / 3))
    bound = epsilon.one_run_audit(scores, included, delta=1e-5, k_grid=grid)
    assert bound.epsilon == pytest.approx(max(expected), abs=1e-9)
    assert bound.choices == 3 and bound.selection == "bonferroni"
    assert bound.epsilon > 0


def test_holdout_bounds_on_the_other_half_only():
    rng = np.random.default_rng(5)
    included = rng.random(1000) < 0.5
    scores = included * 2.0 + rng.normal(size=1000)
    bound = epsilon.one_run_audit(scores, included, delta=1e-5, selection="holdout", seed=1)
    assert bound.canaries == 500 and bound.details["chosen_on"] == 500 and bound.guesses <= 500
    assert 0 < bound.epsilon
    assert bound == epsilon.one_run_audit(scores, included, delta=1e-5, selection="holdout", seed=1)


def randomised_response(true_eps, m, seed):
    """Each canary's bit is reported flipped with probability 1/(1 + e^eps): exactly eps-DP per canary."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    observed = included ^ (rng.random(m) < 1 / (1 + math.exp(true_eps)))
    return observed + 1e-3 * rng.random(m), included


@pytest.mark.parametrize("true_eps", [1.0, 3.0])
def test_one_run_bound_is_valid_and_tight_on_randomised_response(true_eps):
    bounds = np.array([epsilon.one_run_audit(*randomised_response(true_eps, 1000, seed), delta=1e-5).epsilon
                       for seed in range(40)])
    assert np.mean(bounds <= true_eps) >= 0.95
    assert np.all(bounds >= true_eps / 3)


def test_holdout_is_valid_on_randomised_response():
    bounds = np.array([epsilon.one_run_audit(*randomised_response(2.0, 1000, seed), delta=1e-5,
                                             selection="holdout", seed=seed).epsilon for seed in range(20)])
    assert np.mean(bounds <= 2.0) >= 0.95 and np.median(bounds) >= 2.0 / 3


def test_clopper_pearson_upper_bound_solves_the_binomial_tail():
    for errors, trials in [(0, 100), (3, 50), (49, 50)]:
        upper = epsilon.clopper_pearson_upper(errors, trials, 0.025)
        assert stats.binom.cdf(errors, trials, upper) == pytest.approx(0.025, abs=1e-9)
    assert epsilon.clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), abs=1e-12)
    assert epsilon.clopper_pearson_upper(7, 7, 0.05) == 1.0


def test_clopper_pearson_epsilon_is_the_jagielski_formula():
    assert epsilon.clopper_pearson_epsilon(0.01, 0.5, 1e-5) == pytest.approx(math.log((1 - 1e-5 - 0.5) / 0.01))
    assert epsilon.clopper_pearson_epsilon(0.5, 0.01, 1e-5) == pytest.approx(math.log((1 - 1e-5 - 0.5) / 0.01))
    assert epsilon.clopper_pearson_epsilon(0.6, 0.6, 1e-5) == 0.0


def test_multi_run_fixed_threshold_counts_by_hand():
    scores = np.array([3.0, 2.0, 2.5, 0.5, 0.1, 1.5, 0.2, 0.3])
    included = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    bound = epsilon.multi_run_audit(scores, included, delta=1e-5, selection="fixed", threshold=1.0)
    # IN at >= 1: one false negative (0.5), one false positive (1.5) out of 4 each.
    fpr_up = epsilon.clopper_pearson_upper(1, 4, 0.025)
    assert bound.details["fpr"] == 0.25 and bound.details["fnr"] == 0.25 and bound.correct == 6
    assert bound.details["fpr_upper"] == fpr_up == bound.details["fnr_upper"]
    assert bound.epsilon == pytest.approx(max(0.0, math.log((1 - 1e-5 - fpr_up) / fpr_up)))


def gaussian_mechanism_delta(mu, eps):
    """Exact delta(eps) of the Gaussian mechanism with sensitivity / sigma = mu (Balle & Wang 2018, Thm. 8)."""
    return stats.norm.cdf(mu / 2 - eps / mu) - np.exp(eps) * stats.norm.cdf(-mu / 2 - eps / mu)


def test_gdp_conversion_matches_the_gaussian_mechanism():
    assert epsilon.gdp_delta(1.0, 0.0) == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=1e-12)
    for mu in (0.5, 1.0, 2.0):
        grid = np.arange(0, 15, 1e-5)
        expected = grid[np.argmax(gaussian_mechanism_delta(mu, grid) <= 1e-5)]
        assert epsilon.gdp_epsilon(mu, 1e-5) == pytest.approx(expected, abs=1e-5)
        assert epsilon.gdp_delta(mu, epsilon.gdp_epsilon(mu, 1e-5)) == pytest.approx(1e-5, rel=1e-6)


@pytest.mark.parametrize("method", ["clopper_pearson", "gdp"])
def test_multi_run_bounds_stay_below_a_known_gaussian_mechanism(method):
    mu, delta, trials = 1.5, 1e-5, 3000
    grid = np.arange(0, 20, 1e-4)
    true_eps = grid[np.argmax(gaussian_mechanism_delta(mu, grid) <= delta)]
    bounds = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        included = rng.random(trials) < 0.5
        released = mu * included + rng.normal(size=trials)  # sensitivity mu, noise 1: mu-GDP, tightly
        bounds.append(epsilon.multi_run_audit(released, included, delta, method=method).epsilon)
    bounds = np.array(bounds)
    assert np.all(bounds < true_eps)
    # Tight enough to fail: the Gaussian route nearly reaches the truth, Clopper-Pearson a useful fraction of it.
    assert np.min(bounds) > (0.6 if method == "gdp" else 0.2) * true_eps


def test_result_round_trips_through_json_and_is_frozen():
    bound = epsilon.one_run_audit(*randomised_response(2.0, 200, 0), delta=1e-5)
    again = epsilon.EpsilonBound.from_dict(json.loads(json.dumps(bound.to_dict())))
    assert again == bound and again.details["k_plus"] == bound.details["k_plus"]
    with pytest.raises(Exception):
        bound.epsilon = 0.0
    with pytest.raises(TypeError):
        bound.details["k_plus"] = 3
    with pytest.raises(ConfigError, match="another version"):
        epsilon.EpsilonBound.from_dict({**bound.to_dict(), "extra": 1})


@pytest.mark.parametrize("call, message", [
    (lambda: epsilon.one_run_audit([0.1, np.nan], [1, 0], 1e-5), "NaN"),
    (lambda: epsilon.one_run_audit([0.1, 0.2], [1, 2], 1e-5), "True/False"),
    (lambda: epsilon.one_run_audit([0.1, 0.2, 0.3], [1, 0], 1e-5), "equally long"),
    (lambda: epsilon.one_run_audit([0.1, 0.2], [1, 0], 1.5), "delta"),
    (lambda: epsilon.one_run_audit([0.1, 0.2], [1, 0], 1e-5, selection="fixed"), "k_plus and k_minus"),
    (lambda: epsilon.one_run_audit([0.1, 0.2], [1, 0], 1e-5, selection="best"), "unknown selection"),
    (lambda: epsilon.one_run_audit([0.1, 0.2], [1, 0], 1e-5, k_grid=[(0.8, 0.8)]), "k_grid"),
    (lambda: epsilon.guess_counts(np.zeros(3), np.zeros(3, bool), 2, 2), "at most"),
    (lambda: epsilon.multi_run_audit([0.1, 0.2], [1, 1], 1e-5), "both with and without"),
    (lambda: epsilon.multi_run_audit([0.1, 0.2], [1, 0], 1e-5, method="lira"), "unknown multi-run method"),
    (lambda: epsilon.one_run_p_value(1.0, 0.0, 5, 3, 4), "v <= r <= m"),
])
def test_bad_inputs_name_the_problem(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
